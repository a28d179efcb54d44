"""The sources a dataset can be read from again: kept at registration, for refresh.

Every registration from a source the platform can open again (a file path, a DuckDB
file, a database URI) keeps that URI: its row in ``dataset_sources`` shows it with the
password as ``***``, and the URI itself, password included, is written to
``keys/sources/<dataset>.uri`` (mode 0600, as the signing key beside it; backed up
with the keys). It never reaches the store, the ledger or a message. A dataset
registered from an upload (a file in the platform's work folder, gone after the
registration) has no source to read again: its kept source, if any, is forgotten. A
relative file path is kept as an absolute one (the server reads it from its own folder).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import delete, select

from connectors import redact_uri
from connectors.base import split_scheme
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.store import datasets
from sandbox.data.tables import dataset_sources

log = logging.getLogger("sandbox.data.kept_sources")


def _file(platform: Platform, name: str) -> Path:
    return platform.home / "keys" / "sources" / f"{name}.uri"


def _uploaded(platform: Platform, uri: str) -> bool:
    """True for a file in the platform's own work folders (an upload being registered)."""
    scheme, rest = split_scheme(uri)
    path = (rest if scheme else uri).partition("?")[0]
    try:
        return Path(path).resolve().is_relative_to((platform.home / "tmp").resolve())
    except (OSError, ValueError):
        return False


_FILE_SCHEMES = ("csv", "parquet", "jsonl", "duckdb", "excel", "xlsx")


def absolute(uri: str) -> str:
    """The URI with a relative file path made absolute, so that a refresh started from
    another folder (the server's) reads the same file."""
    scheme, rest = split_scheme(uri)
    if scheme == "":
        path, mark, options = uri.partition("?")
        return os.path.abspath(path) + mark + options if not os.path.isabs(path) else uri
    if scheme in _FILE_SCHEMES and not rest.startswith("/"):
        return f"{scheme}://{os.path.abspath(rest.partition('?')[0])}" + (
            "?" + rest.partition("?")[2] if "?" in rest else ""
        )
    return uri


def keep_source(platform: Platform, name: str, uri: str) -> None:
    """Keep (or forget, for an upload) the source dataset ``name`` was registered from.

    Called after the registration is committed; a failure to keep it is logged, not
    raised: the version stands, and ``dataset refresh`` says there is no source.
    """
    try:
        with platform.store.transaction() as conn:
            dataset_id = conn.execute(
                select(datasets.c.id).where(datasets.c.name == name)
            ).scalar_one()
            if _uploaded(platform, uri):
                conn.execute(
                    delete(dataset_sources).where(dataset_sources.c.dataset_id == dataset_id)
                )
                _file(platform, name).unlink(missing_ok=True)
                return
            uri = absolute(uri)
            _write_secret(_file(platform, name), uri)
            values = {"source": redact_uri(uri), "updated_at": now_utc()}
            found = conn.execute(
                select(dataset_sources.c.dataset_id).where(
                    dataset_sources.c.dataset_id == dataset_id
                )
            ).first()
            if found is None:
                conn.execute(dataset_sources.insert().values(dataset_id=dataset_id, **values))
            else:
                conn.execute(
                    dataset_sources.update()
                    .where(dataset_sources.c.dataset_id == dataset_id)
                    .values(**values)
                )
    except OSError:
        log.warning("the source of dataset %s could not be kept for refresh", name, exc_info=True)


def _write_secret(path: Path, uri: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(uri)
    os.replace(temporary, path)


def kept_uri(platform: Platform, name: str) -> str | None:
    """The full URI dataset ``name`` is read again from, or None."""
    try:
        return _file(platform, name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
