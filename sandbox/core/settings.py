"""Settings, declared once in :mod:`sandbox.core.catalogue` (type, default, help, check).

They are read, in increasing priority, from those defaults, from
``sandbox.toml`` in the platform's home folder (dotted names map to tables:
``job.time_limit_s`` is ``[job] time_limit_s``), and from environment variables
``SANDBOX_<NAME>`` with dots as underscores (``SANDBOX_JOB_TIME_LIMIT_S``).
Every value is validated at load; an error names the setting and its source.
The resulting :class:`Settings` is immutable and passed down explicitly; code reads it
by typed attribute (``settings.job.time_limit_s``), never by a string key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.errors import ConfigError
from policies.suggest import did_you_mean
from sandbox.core.catalogue import SETTINGS, Setting, Values

_BY_NAME = {s.name: s for s in SETTINGS}


def _convert(setting: Setting, raw: Any, source: str) -> Any:
    try:
        if setting.kind is bool:
            if isinstance(raw, bool):
                value = raw
            elif str(raw).strip().lower() in {"1", "true", "yes", "on"}:
                value = True
            elif str(raw).strip().lower() in {"0", "false", "no", "off"}:
                value = False
            else:
                raise ValueError(raw)
        elif isinstance(raw, bool):
            # int(True) == 1: a TOML true/false is never a number.
            raise ValueError(raw)
        elif setting.kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        else:
            value = setting.kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting '{setting.name}' from {source}: expected {setting.kind.__name__}, got {raw!r}"
        ) from None
    if setting.check is not None and not setting.check(value):
        raise ConfigError(
            f"setting '{setting.name}' from {source}: must be {setting.rule}, got {raw!r}"
        )
    return value


def _flatten(data: Mapping, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@dataclass(frozen=True)
class Settings(Values):
    """The platform's home folder and its validated settings, as typed attributes."""

    home: Path = Path(".")
    sources: Mapping[str, str] = field(default_factory=dict)  # dotted name -> where it came from

    @property
    def values(self) -> dict[str, Any]:
        """Every setting by dotted name (for ``sandbox settings`` and the docs)."""
        return {s.name: self.value(s.name) for s in SETTINGS}

    def value(self, name: str) -> Any:
        """One setting by its dotted name, for names held as data (a hold's setting)."""
        if name not in _BY_NAME:
            raise ConfigError(f"unknown setting '{name}'; " + did_you_mean(name, _BY_NAME))
        node: Any = self
        for part in name.split("."):
            node = getattr(node, part)
        return node

    def changed(self, **dotted: Any) -> Settings:
        """A copy with some settings changed, each validated as at load
        (``settings.changed(**{"job.threads": 1})``)."""
        values = self.values
        sources = dict(self.sources)
        for name, raw in dotted.items():
            if name not in _BY_NAME:
                raise ConfigError(f"unknown setting '{name}'; " + did_you_mean(name, _BY_NAME))
            values[name] = _convert(_BY_NAME[name], raw, "a change in code")
            sources[name] = "changed"
        return _build(self.home, values, sources)

    @classmethod
    def load(cls, home: Path, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {s.name: s.default for s in SETTINGS}
        sources = {s.name: "default" for s in SETTINGS}
        toml_path = Path(home) / "sandbox.toml"
        if toml_path.exists():
            try:
                data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{toml_path.name}: not valid TOML: {exc}") from exc
            for name, raw in _flatten(data).items():
                if name not in _BY_NAME:
                    raise ConfigError(
                        f"{toml_path.name}: unknown setting '{name}'; "
                        + did_you_mean(name, _BY_NAME)
                    )
                values[name] = _convert(_BY_NAME[name], raw, toml_path.name)
                sources[name] = toml_path.name
        env_names = {env_name(s.name): s for s in SETTINGS}
        for key, raw in environ.items():
            if not key.startswith("SANDBOX_") or key in {
                "SANDBOX_HOME",
                "SANDBOX_TOKEN",
                "SANDBOX_TOKEN_FILE",  # the CLI's: a file holding the token
                "SANDBOX_SERVER",  # the CLI's: the API to talk to instead of a home
                "SANDBOX_TEST_FAULTS",  # test-only fault points (sandbox/core/storage.py)
            }:
                continue
            if key not in env_names:
                raise ConfigError(
                    f"environment variable {key} names no setting; " + did_you_mean(key, env_names)
                )
            setting = env_names[key]
            values[setting.name] = _convert(setting, raw, f"environment variable {key}")
            sources[setting.name] = key
        if values["ray.dispatch_jobs"] and not values["ray.address"].strip():
            raise ConfigError(
                f"ray.dispatch_jobs is on ({sources['ray.dispatch_jobs']}) but ray.address is "
                "empty: name the Ray cluster (or 'local'), or turn ray.dispatch_jobs off"
            )
        return _build(Path(home), values, sources)


def env_name(name: str) -> str:
    return "SANDBOX_" + name.upper().replace(".", "_")


def _build(home: Path, values: Mapping[str, Any], sources: Mapping[str, str]) -> Settings:
    """Settings from flat dotted values: each section's dataclass from its names."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for name, value in values.items():
        section, _, attr = name.rpartition(".")
        (sections.setdefault(section, {}) if section else top)[attr] = value
    for f in dataclasses.fields(Values):
        if f.name in sections:
            top[f.name] = _SECTIONS[f.name](**sections[f.name])
    return Settings(home=home, sources=dict(sources), **top)


_SECTIONS: dict[str, Any] = {
    f.name: f.default_factory
    for f in dataclasses.fields(Values)
    if dataclasses.is_dataclass(f.default_factory)
}
