"""Which server-side sources a provider may name through the API.

Over HTTP a "path" is a path on the platform's machine, so it is refused
unless it lies under one of the folders of ``api.source_roots`` (after
resolving symlinks and ``..``); with no folders configured no server-side file
may be named at all, and data comes by upload. Database URIs
(``postgresql://``) name another server and are allowed. Known shortcut: the
check and the read are two steps, so a file swapped for a symlink in between
is read; the folders are the host's own, which makes that the host's risk.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from connectors.base import split_scheme
from policies.errors import InputError

FILE_SCHEMES = {"", "file", "csv", "parquet", "jsonl", "duckdb"}
DATABASE_SCHEMES = {"postgresql", "postgres"}


def _path_of(scheme: str, rest: str, uri: str) -> str:
    if scheme == "":
        return uri
    path = rest.partition("?")[0]
    if scheme == "file":
        if path.startswith("localhost/"):
            path = path[len("localhost") :]
        path = unquote(path)
    return path


def check_source(uri: str, roots: tuple[str, ...]) -> None:
    """Raise InputError unless ``uri`` is a database URI or a file under ``roots``."""
    scheme, rest = split_scheme(uri)
    if scheme in DATABASE_SCHEMES:
        return
    if scheme not in FILE_SCHEMES:
        raise InputError(
            f"source scheme '{scheme}://' cannot be used through the API; use a file under "
            "a folder of api.source_roots, a postgresql:// URI, or upload the file "
            "(POST /v1/datasets/upload)"
        )
    if not roots:
        raise InputError(
            "this platform accepts no server-side file paths through the API (setting "
            "api.source_roots is empty); upload the file instead (POST /v1/datasets/upload)"
        )
    path = _path_of(scheme, rest, uri)
    if not Path(path).is_absolute():
        raise InputError("a server-side file must be named by an absolute path")
    resolved = Path(path).resolve()
    for root in roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return
    raise InputError(
        "the file is not under a folder this platform allows for server-side sources "
        f"(setting api.source_roots: {', '.join(roots)}); upload it instead "
        "(POST /v1/datasets/upload)"
    )
