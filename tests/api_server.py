"""A real ``sandbox serve`` on 127.0.0.1, for the API tests and the benchmark.

:class:`ApiServer` starts the server as a subprocess (uvicorn, a random free
loopback port, a platform home in ``tmp_path``), waits for ``/readyz``, and
stops it: SIGTERM, then SIGKILL after a grace period. :meth:`ApiServer.kill`
is the crash: SIGKILL of the server process and of every process it had
started (the job workers run in their own sessions, so they are collected by
pid before the kill).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiServer:
    def __init__(
        self,
        home: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ):
        self.home = Path(home)
        self.workers = workers
        self.env = dict(env or {})
        self.log_path = log or self.home.parent / f"server-{os.getpid()}-{id(self)}.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ApiServer:
        self.port = free_port()
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        env.pop("SANDBOX_TOKEN", None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox",
                "--home",
                str(self.home),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=env,
            cwd=str(ROOT),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def kill(self) -> None:
        """SIGKILL the server and every process it started (the crash of the host)."""
        if self.proc is None:
            return
        children = self.descendants()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(children, timeout=10)
        self.proc = None
        self._log.close()

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None:
            return
        children = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
        self.proc = None
        self._log.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- a platform home with one principal of each role, and a small dataset -----

ROLES = {
    "provider": "provider",
    "provider2": "provider",
    "authority": "authority",
    "reviewer": "reviewer",
    "operator": "operator",
    "operator2": "operator",
    "consumer": "consumer",
    "auditor": "auditor",
}

PERSONS_YAML = """\
entity_key: pid
columns:
  pid: identifier
  county: dimension
  sex: dimension
  income: measure
"""


def make_home(home: Path, settings_toml: str = "", store_url: str | None = None) -> dict[str, str]:
    """Initialise a platform home and add one principal per role; returns name -> token.
    ``store_url``: the home's store is that PostgreSQL database (``[store] url``)."""
    from sandbox.core.ledger import now_utc
    from sandbox.core.platform import Platform
    from sandbox.core.principals import Role, insert

    if store_url is not None:
        home.mkdir(mode=0o700, parents=True)
        store = f'[store]\nurl = "{store_url}"\n'
        (home / "sandbox.toml").write_text(store + settings_toml, encoding="utf-8")
    platform = Platform.init(home)
    if settings_toml and store_url is None:
        (home / "sandbox.toml").write_text(settings_toml, encoding="utf-8")
    tokens = {}
    try:
        with platform.store.transaction() as conn:
            for name, role in ROLES.items():
                jurisdiction = "city" if role == "authority" else None
                principal, token = insert(conn, name, Role(role), name, jurisdiction, now_utc())
                platform.record(
                    conn, principal.actor, "principal.add", f"principal:{name}", {"role": role}
                )
                tokens[name] = token
    finally:
        platform.close()
    return tokens


def host_grant(home: Path, operator: str, dataset: str, until: str = "2099-12-31", **kw) -> int:
    """A direct grant by the city authority ``authority``, made on the host (as ``sandbox
    grant add`` is): the API grants no data use outside the workflow."""
    from sandbox.core.platform import Platform
    from sandbox.core.principals import Role, by_name
    from sandbox.data.grants import add_grant

    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            authority = by_name(conn, "authority", Role.AUTHORITY)
        return add_grant(platform, authority, operator, dataset, until=until, **kw)
    finally:
        platform.close()


def write_persons(folder: Path, rows: int = 2000) -> tuple[Path, Path]:
    """A small CSV of persons (4 counties x 2 sexes) and its classification YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "persons.csv"
    lines = ["pid,county,sex,income"]
    for i in range(rows):
        lines.append(f"P{i:07d},{370800 + i % 4 + 1},{'FM'[i % 2]},{1000 + (i * 37) % 5000}")
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    yaml_path = folder / "persons.yaml"
    yaml_path.write_text(PERSONS_YAML, encoding="utf-8")
    return csv, yaml_path


def check_error_fields(error: dict) -> None:
    """The envelope's fields: a policy refusal also names its rule and subject."""
    base = {"code", "message", "article", "request_id"}
    if error.get("code") == "refused":
        assert set(error) == base | {"rule", "subject"}, error
        assert isinstance(error["rule"], str) and error["rule"] != "refused", error
    else:
        assert set(error) == base, error


def check_envelope(response: httpx.Response) -> None:
    """The error contract: every error body is exactly the envelope, with the request id."""
    if response.is_success:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    check_error_fields(error)
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert error["article"] is None or error["article"].startswith("Art. "), error
    assert error["request_id"] == response.headers.get("x-request-id"), error
    assert "Traceback" not in response.text and 'File "' not in response.text
