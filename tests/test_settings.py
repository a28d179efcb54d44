"""Settings: defaults, sandbox.toml, environment, validation, and the documentation contract."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from policies.errors import ConfigError
from sandbox.core.catalogue import SETTINGS
from sandbox.core.platform import Platform
from sandbox.core.settings import Settings, env_name

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def write_toml(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "sandbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment(tmp_path):
    settings = Settings.load(tmp_path, environ={})
    for setting in SETTINGS:
        assert settings.value(setting.name) == setting.default
        assert settings.sources[setting.name] == "default"
    assert settings.job.time_limit_s == 60.0
    assert settings.engine == "duckdb"
    assert settings.home == tmp_path


def test_toml_overrides_default(tmp_path):
    write_toml(tmp_path, "[job]\ntime_limit_s = 5\nspare_worker = false\n")
    settings = Settings.load(tmp_path, environ={})
    assert settings.job.time_limit_s == 5.0
    assert isinstance(settings.job.time_limit_s, float)
    assert settings.job.spare_worker is False
    assert settings.sources["job.time_limit_s"] == "sandbox.toml"
    assert settings.job.threads == 2  # untouched settings keep their default


def test_environment_overrides_toml(tmp_path):
    write_toml(tmp_path, "[job]\ntime_limit_s = 5\n")
    settings = Settings.load(tmp_path, environ={"SANDBOX_JOB_TIME_LIMIT_S": "7.5"})
    assert settings.job.time_limit_s == 7.5
    assert settings.sources["job.time_limit_s"] == "SANDBOX_JOB_TIME_LIMIT_S"


def test_process_environment_is_read_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_JOB_THREADS", "3")
    assert Settings.load(tmp_path).job.threads == 3


def test_platform_open_loads_the_home_settings(tmp_path):
    home = tmp_path / "home"
    Platform.init(home).close()
    write_toml(home, "[disclosure]\nmin_entities = 25\n")
    platform = Platform.open(home)
    try:
        assert platform.settings.disclosure.min_entities == 25
    finally:
        platform.close()


def test_home_and_token_variables_are_not_settings(tmp_path):
    settings = Settings.load(tmp_path, environ={"SANDBOX_HOME": "/x", "SANDBOX_TOKEN": "sbx_abc"})
    assert settings.job.threads == 2


def test_unknown_setting_in_toml_names_it_with_a_suggestion(tmp_path):
    write_toml(tmp_path, "[job]\ntime_limt_s = 5\n")
    with pytest.raises(ConfigError) as err:
        Settings.load(tmp_path, environ={})
    message = str(err.value)
    assert "job.time_limt_s" in message
    assert "sandbox.toml" in message
    assert "did you mean 'job.time_limit_s'" in message


def test_unknown_table_in_toml_is_refused(tmp_path):
    write_toml(tmp_path, "[jobs]\ntime_limit_s = 5\n")
    with pytest.raises(ConfigError, match=r"jobs\.time_limit_s.*did you mean 'job\.time_limit_s'"):
        Settings.load(tmp_path, environ={})


def test_unknown_setting_in_environment_names_it_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError) as err:
        Settings.load(tmp_path, environ={"SANDBOX_JOB_TIME_LIMT_S": "5"})
    message = str(err.value)
    assert "SANDBOX_JOB_TIME_LIMT_S" in message
    assert "did you mean 'SANDBOX_JOB_TIME_LIMIT_S'" in message


def test_unknown_name_asked_of_settings_is_refused(tmp_path):
    settings = Settings.load(tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"'job\.thread'.*did you mean 'job\.threads'"):
        settings.value("job.thread")


@pytest.mark.parametrize(
    ("toml", "name", "why"),
    [
        ("[job]\ntime_limit_s = -5\n", "job.time_limit_s", "a positive number"),
        ("[job]\ntime_limit_s = 0\n", "job.time_limit_s", "a positive number"),
        ('[job]\ntime_limit_s = "soon"\n', "job.time_limit_s", "expected float"),
        ("[job]\nmemory_limit_mb = 100\n", "job.memory_limit_mb", "at least 3072"),
        ("[job]\nthreads = 2.5\n", "job.threads", "expected int"),
        ("[job]\nthreads = true\n", "job.threads", "expected int"),
        ("[job]\ntime_limit_s = true\n", "job.time_limit_s", "expected float"),
        ("[job]\nthreads = [1, 2]\n", "job.threads", "expected int"),
        ('[job]\nspare_worker = "maybe"\n', "job.spare_worker", "expected bool"),
        ('engine = "presto"\n', "engine", "one of: duckdb"),
        ("[disclosure]\ndominance_k = 1.5\n", "disclosure.dominance_k", "(0, 1]"),
        ("[disclosure]\np_ratio = 1\n", "disclosure.p_ratio", "[0, 1)"),
        ("[disclosure]\nmin_entities = 1\n", "disclosure.min_entities", "at least 2"),
        ('[ingest]\ncompression = "gzip"\n', "ingest.compression", "zstd, snappy, none"),
    ],
)
def test_invalid_toml_value_names_setting_and_source(tmp_path, toml, name, why):
    write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as err:
        Settings.load(tmp_path, environ={})
    message = str(err.value)
    assert f"'{name}'" in message
    assert "sandbox.toml" in message
    assert why in message


@pytest.mark.parametrize(
    ("variable", "raw", "why"),
    [
        ("SANDBOX_JOB_TIME_LIMIT_S", "-1", "a positive number"),
        ("SANDBOX_JOB_TIME_LIMIT_S", "ten", "expected float"),
        ("SANDBOX_JOB_THREADS", "1.5", "expected int"),
        ("SANDBOX_JOB_SPARE_WORKER", "perhaps", "expected bool"),
        ("SANDBOX_DISCLOSURE_DOMINANCE_N", "3", "1 or 2"),
    ],
)
def test_invalid_environment_value_names_setting_and_variable(tmp_path, variable, raw, why):
    with pytest.raises(ConfigError) as err:
        Settings.load(tmp_path, environ={variable: raw})
    message = str(err.value)
    assert f"environment variable {variable}" in message
    setting = next(s.name for s in SETTINGS if env_name(s.name) == variable)
    assert f"'{setting}'" in message
    assert why in message


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("off", False), ("Yes", True)])
def test_boolean_words_from_environment(tmp_path, raw, expected):
    settings = Settings.load(tmp_path, environ={"SANDBOX_JOB_SPARE_WORKER": raw})
    assert settings.job.spare_worker is expected


def test_broken_toml_is_a_config_error(tmp_path):
    write_toml(tmp_path, "[job\ntime_limit_s = 5\n")
    with pytest.raises(ConfigError, match="sandbox.toml: not valid TOML"):
        Settings.load(tmp_path, environ={})


def test_every_default_passes_its_own_check():
    for setting in SETTINGS:
        assert isinstance(setting.default, setting.kind), setting.name
        if setting.check is not None:
            assert setting.check(setting.default), setting.name


def _documented_rows() -> dict[str, str]:
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_every_setting_has_help_and_is_documented():
    rows = _documented_rows()
    for setting in SETTINGS:
        assert setting.help.strip(), f"setting {setting.name} has no help"
        assert setting.name in rows, f"setting {setting.name} is missing from docs/settings.md"
        assert env_name(setting.name) in rows[setting.name], setting.name
    stale = set(rows) - {s.name for s in SETTINGS}
    assert not stale, f"docs/settings.md documents settings that do not exist: {sorted(stale)}"


def test_setting_names_are_unique():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))


def test_every_setting_is_a_typed_attribute_of_its_section(tmp_path):
    """Code reads settings as attributes; each one's declared type is what the loader gives."""
    settings = Settings.load(tmp_path, environ={"SANDBOX_PSI_FPR": "1e-6"})
    for setting in SETTINGS:
        section, _, attr = setting.name.rpartition(".")
        holder = getattr(settings, section) if section else settings
        assert isinstance(getattr(holder, attr), setting.kind), setting.name
    assert settings.psi.fpr == 1e-6
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.job.threads = 9  # type: ignore[misc]


def test_a_change_in_code_is_validated_like_a_loaded_value(tmp_path):
    settings = Settings.load(tmp_path, environ={})
    changed = settings.changed(**{"job.threads": "3", "review.person_jobs": "no"})
    assert changed.job.threads == 3 and changed.review.person_jobs is False
    assert changed.sources["job.threads"] == "changed"
    assert settings.job.threads == 2  # the original is untouched
    with pytest.raises(ConfigError, match="job.threads"):
        settings.changed(**{"job.threads": 0})
    with pytest.raises(ConfigError, match="did you mean 'job.threads'"):
        settings.changed(**{"job.thread": 1})
