"""The isolated runner, driven directly: limits, file and network isolation, its environment.

Every test runs real worker processes (``python -m sandbox.run.worker``). What the
tests look at from the outside is what the kernel shows of the test's own child
processes (``/proc/<pid>/environ``, ``cwd``, ``maps``), never the runner's
private state.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from policies.errors import JobFailed
from sandbox.run.runner import Limits, Runner

REPO = Path(__file__).resolve().parents[1]
PROC = Path("/proc")


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("runner") / "t.parquet"
    pq.write_table(pa.table({"g": [i % 3 for i in range(100)], "x": list(range(100))}), path)
    return path


def _children() -> list[int]:
    """Pids of this process's live (not zombie) child workers."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == os.getpid() and state != "Z" and b"sandbox.run.worker" in cmdline:
            found.append(int(entry.name))
    return found


def _wait_warm(pid: int, timeout: float = 20.0) -> None:
    """Wait until a spare worker has DuckDB and pyarrow.dataset loaded (it then reads stdin)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        maps = (PROC / str(pid) / "maps").read_text()
        if "duckdb" in maps and "_dataset" in maps:
            time.sleep(0.05)
            return
        time.sleep(0.05)
    raise AssertionError("the spare worker did not finish its imports")


def test_a_query_runs_and_names_its_isolation_layers(table_path):
    runner = Runner(Limits(time_s=30), spare=False)
    result = runner.run("SELECT g, SUM(x) AS s FROM t GROUP BY g ORDER BY g", {"t": table_path})
    assert result.table.to_pydict() == {"g": [0, 1, 2], "s": [1683, 1617, 1650]}
    for layer in ("rlimit_cpu", "rlimit_as", "duckdb_external_access_off", "scrubbed_env"):
        assert layer in result.layers
    if os.geteuid() == 0:
        assert "netns" in result.layers
    assert result.spare_used is False


def test_a_looping_query_is_stopped_at_the_time_limit(table_path):
    runner = Runner(Limits(time_s=2), spare=False)
    started = time.monotonic()
    with pytest.raises(JobFailed) as caught:
        runner.run("SELECT sum(hash(i)) FROM range(10000000000) r(i)", {"t": table_path})
    elapsed = time.monotonic() - started
    assert caught.value.code == "time_limit", (caught.value.code, caught.value.message, elapsed)
    assert "2 s" in caught.value.message
    assert 2 <= elapsed < 7, elapsed
    assert _children() == [], "the stopped worker must not outlive the job"


def test_more_rows_than_the_cap_fail_the_job(table_path):
    runner = Runner(Limits(time_s=30, max_rows=50), spare=False)
    assert runner.run("SELECT * FROM range(50)", {"t": table_path}).table.num_rows == 50
    with pytest.raises(JobFailed) as caught:
        runner.run("SELECT * FROM range(51)", {"t": table_path})
    assert caught.value.code == "output_rows"
    assert "50" in caught.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('{sibling}')",
        "COPY (SELECT 42 AS answer) TO '{leak}'",
        "ATTACH '{other}' AS other",
    ],
    ids=["read_csv", "glob", "read_parquet_of_another_file", "copy_to", "attach"],
)
def test_file_access_from_sql_is_denied(sql, table_path, tmp_path):
    """The worker's DuckDB may open exactly the granted snapshot files; any other file
    (a copy of the snapshot next to it included) is refused."""
    leak = tmp_path / "leak.csv"
    other = tmp_path / "other.duckdb"
    sibling = tmp_path / "sibling.parquet"
    shutil.copyfile(table_path, sibling)
    runner = Runner(Limits(time_s=30), spare=False)
    with pytest.raises(JobFailed) as caught:
        runner.run(
            sql.format(leak=leak, other=other, sibling=sibling),
            {"t": table_path},
        )
    assert caught.value.code == "access_denied"
    assert caught.value.article == "Art. 15"
    assert "passwd" not in caught.value.message
    assert not leak.exists() and not other.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 42 AS answer) TO '{table}' (FORMAT parquet, USE_TMP_FILE false)",
        "COPY (SELECT 42 AS answer) TO '{table}' (FORMAT csv)",
        "ATTACH '{table}' AS granted; CREATE TABLE granted.z AS SELECT 1 AS a",
    ],
    ids=["copy_over_in_place", "copy_over_through_a_temporary_file", "attach_and_create"],
)
def test_the_granted_snapshot_cannot_be_changed_from_sql(sql, tmp_path):
    """DuckDB's allowed_paths would also let SQL write the granted files; the vault's
    read-only mode (0444, no capability to override it) and Landlock keep them intact."""
    table = tmp_path / "granted.parquet"
    pq.write_table(pa.table({"g": [1, 2, 3]}), table)
    table.chmod(0o400)  # as the vault places snapshots
    before = table.read_bytes()
    runner = Runner(Limits(time_s=30), spare=False)
    try:
        runner.run(sql.format(table=table), {"t": table})
    except JobFailed as failure:
        assert failure.code in ("access_denied", "engine_error"), failure
    assert table.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["granted.parquet"]
    counted = runner.run("SELECT COUNT(*) AS n FROM t", {"t": table}).table
    assert counted.column("n").to_pylist() == [3]


def test_the_engine_configuration_is_locked(table_path):
    runner = Runner(Limits(time_s=30), spare=False)
    with pytest.raises(JobFailed) as caught:
        runner.run("SET enable_external_access = true", {"t": table_path})
    assert caught.value.code == "engine_error"
    # the engine's own message (which could quote data) does not travel back
    assert "enable_external_access" not in caught.value.message


NETWORK_PROBE = textwrap.dedent(
    """
    import socket, sys
    from sandbox.run.isolation import leave_network
    if sys.argv[2] == "leave":
        layer = leave_network()
        print("layer", layer, flush=True)
        if layer is None:
            sys.exit(3)
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
    except OSError as exc:
        print("blocked", type(exc).__name__, flush=True)
        sys.exit(0)
    print("connected", flush=True)
    sys.exit(1)
    """
)


def _probe(port: int, mode: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", NETWORK_PROBE, str(port), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_the_worker_leaves_the_network():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        control = _probe(port, "stay")
        assert control.returncode == 1 and "connected" in control.stdout, control
        probe = _probe(port, "leave")
    if probe.returncode == 3:
        pytest.skip("no network namespace available here (not root, no user namespaces)")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "blocked" in probe.stdout


def test_the_worker_environment_holds_nothing_of_the_platform(table_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_TOKEN", "sbx_secret_token_of_the_test")
    monkeypatch.setenv("SANDBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    runner = Runner(Limits(time_s=30), spare=True)
    try:
        [pid] = _children()
        environ = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
        assert not [k for k in env if k.startswith("SANDBOX_")], env
        assert env["HOME"] != str(tmp_path)
        assert not Path(env["HOME"]).exists()
        workdir = Path(os.readlink(PROC / str(pid) / "cwd"))
        assert workdir != Path.cwd()
        assert workdir.stat().st_mode & 0o777 == 0o700
        assert list(workdir.iterdir()) == []
    finally:
        runner.close()
    assert _children() == []
    assert not workdir.exists(), "the worker's folder is removed with it"


def test_a_warm_spare_is_used_and_starts_faster(table_path):
    sql = "SELECT COUNT(*) AS n FROM t"
    cold = Runner(Limits(time_s=30), spare=False).run(sql, {"t": table_path})
    assert cold.spare_used is False
    runner = Runner(Limits(time_s=30), spare=True)
    try:
        first = runner.run(sql, {"t": table_path})
        [spare] = _children()  # a new spare is started after each run
        _wait_warm(spare)
        second = runner.run(sql, {"t": table_path})
    finally:
        runner.close()
    assert first.table.to_pydict() == second.table.to_pydict() == {"n": [100]}
    assert second.spare_used is True
    assert second.wait_s < cold.wait_s, (second.wait_s, cold.wait_s)
    assert _children() == []


def test_a_killed_platform_process_leaves_no_raw_result_behind(table_path):
    """kill -9 of the platform process while its worker's folder holds a result: the
    next runner on the host removes the folder (it held rows before the output check)."""
    import subprocess
    import sys
    import tempfile
    import textwrap

    script = textwrap.dedent(
        """
        import os, signal
        from pathlib import Path
        from sandbox.run.runner import Limits, Runner
        runner = Runner(Limits(time_s=30), spare=True)
        folder = runner._spare.dir
        (folder / "result.arrow").write_bytes(b"raw rows before the output check")
        print(folder, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == -9, done.stderr
    left = Path(done.stdout.strip())
    assert left.parent == Path(tempfile.gettempdir()) and (left / "result.arrow").exists()
    live = Path(tempfile.mkdtemp(prefix=f"sandbox-worker-{os.getpid()}-"))
    try:
        Runner(Limits(time_s=30), spare=False)
        assert not left.exists()
        assert live.exists()  # a live platform process's folder is left alone
    finally:
        live.rmdir()
