"""The pieces the settings catalogue (:mod:`sandbox.core.catalogue`) is declared with:
:func:`setting` for one field of a section, the checks a value must pass, the list
types read from TOML arrays or from one environment string, and :func:`declared`,
which lists a section tree's settings by dotted name."""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """One setting by its dotted name, as the loader and the docs see it."""

    name: str
    default: Any
    help: str
    kind: type = str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # what the check demands, in words


def setting(default: T, help: str, check: Callable[[Any], bool] | None = None, rule: str = "") -> T:
    """Declare one field of a section: its default, help, and check (with its rule in words)."""
    meta = {"help": help, "check": check, "rule": rule}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def positive(value: Any) -> bool:
    return value > 0


def fraction(value: Any) -> bool:
    return 0 < value <= 1


class PathList(tuple):
    """A list of folders: a TOML array of strings, or one string split at ``os.pathsep``."""

    def __new__(cls, raw: Any = ()):
        if isinstance(raw, str):
            raw = [part for part in raw.split(os.pathsep) if part.strip()]
        if not isinstance(raw, list | tuple) or not all(isinstance(p, str) for p in raw):
            raise TypeError(raw)
        return super().__new__(cls, (p.strip() for p in raw))


def absolute_paths(value: Any) -> bool:
    return all(Path(p).is_absolute() for p in value)


class HostList(tuple):
    """A list of ``host`` or ``host:port``: a TOML array of strings, or one string split at ','."""

    def __new__(cls, raw: Any = ()):
        if isinstance(raw, str):
            raw = raw.split(",")
        if not isinstance(raw, list | tuple) or not all(isinstance(h, str) for h in raw):
            raise TypeError(raw)
        return super().__new__(cls, (h.strip() for h in raw if h.strip()))


def hosts(value: Any) -> bool:
    for entry in value:
        try:
            parts = urlsplit(f"//{entry}")
            if not parts.hostname or parts.path or parts.query or "@" in entry or "," in entry:
                return False
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return False
    return True


def store_url(value: Any) -> bool:
    """Empty (the home's SQLite file), a SQLite file URL or a PostgreSQL URL."""
    text = str(value).strip()
    if not text:
        return True
    scheme = text.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return text.startswith("sqlite:///") and len(text) > len("sqlite:///")
    return scheme in ("postgresql", "postgresql+psycopg2") and "://" in text


def declared(cls: type, prefix: str) -> list[Setting]:
    hints: dict[str, Any] = typing.get_type_hints(cls)
    out: list[Setting] = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            out += declared(kind, f"{prefix}{f.name}.")
            continue
        factory: Any = f.default_factory  # a tuple default is given by a factory (setting())
        default = f.default if factory is dataclasses.MISSING else factory()
        meta = f.metadata
        out.append(
            Setting(f"{prefix}{f.name}", default, meta["help"], kind, meta["check"], meta["rule"])
        )
    return out
