"""Attacks from inside a job worker: each is stopped with a clear reason, and the next job runs.

Two forms carry an attack. Arbitrary Python runs in the test harness
(``tests/worker_harness.py``): a worker set up exactly like a job's by
:func:`sandbox.run.worker.serve`, driven through the real runner. SQL runs in the
real worker, handed to the runner directly (admission would refuse most of it
first; these tests take that layer away to show the ones below it). After each
attack a real SQL job on the granted snapshot must succeed: the platform stays
up and answers the next request.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from policies.errors import JobFailed
from sandbox.core.platform import Platform
from sandbox.run import isolation
from sandbox.run.runner import Limits, Runner, available_layers

HARNESS = "tests.worker_harness"
NEXT_SQL = "SELECT g, SUM(x) AS s FROM t GROUP BY g ORDER BY g"
NEXT_ROWS = {"g": [0, 1, 2], "s": [1683, 1617, 1650]}
FULL = isolation.landlock_abi() >= 6 and "seccomp" in available_layers() and os.geteuid() == 0
needs_layers = pytest.mark.skipif(not FULL, reason="needs root, Landlock ABI 6+ and seccomp")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A platform home (its real key file) with two snapshots in its vault."""
    home = tmp_path_factory.mktemp("iso") / "home"
    Platform.init(home).close()
    granted = home / "vault" / "aa" / "granted.parquet"
    other = home / "vault" / "bb" / "other.parquet"
    for path, offset in ((granted, 0), (other, 1000)):
        path.parent.mkdir(parents=True, exist_ok=True)
        xs = list(range(offset, offset + 100))
        pq.write_table(pa.table({"g": [i % 3 for i in range(100)], "x": xs}), path)
    return {"home": home, "granted": granted, "other": other, "key": home / "keys/platform.key"}


@pytest.fixture(scope="module")
def jobs():
    runner = Runner(Limits(time_s=30), spare=True)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def harness():
    """A warm harness worker for each attack with the default limits."""
    runner = Runner(Limits(time_s=20), spare=True, worker_module=HARNESS)
    yield runner
    runner.close()


def _next_job_runs(jobs: Runner, world) -> None:
    result = jobs.run(NEXT_SQL, {"t": world["granted"]})
    assert result.table.to_pydict() == NEXT_ROWS


def _attack(code: str, world, runner: Runner | None = None, **limits) -> JobFailed:
    own = runner is None
    if own:
        runner = Runner(Limits(**limits), worker_module=HARNESS)
    try:
        with pytest.raises(JobFailed) as caught:
            runner.run(textwrap.dedent(code), {"t": world["granted"]})
    finally:
        if own:
            runner.close()
    failure = caught.value
    assert failure.message and failure.code, failure
    return failure


def test_the_harness_runs_python_in_a_worker_configured_like_a_jobs(world):
    code = """
    import pyarrow.parquet as pq
    outcome = pq.read_table(tables["t"]).num_rows
    """
    runner = Runner(Limits(time_s=20), worker_module=HARNESS)
    try:
        result = runner.run(textwrap.dedent(code), {"t": world["granted"]})
    finally:
        runner.close()
    assert result.table.to_pydict() == {"outcome": ["100"]}, "the granted snapshot is readable"
    jobs_layers = Runner(Limits(time_s=20)).run(NEXT_SQL, {"t": world["granted"]}).layers
    assert set(result.layers) == set(jobs_layers) - {
        "duckdb_external_access_off",
        "duckdb_config_locked",
    }


@needs_layers
def test_every_isolation_layer_is_in_force_for_a_job(jobs, world):
    layers = set(jobs.run(NEXT_SQL, {"t": world["granted"]}).layers)
    expected = {"netns", "no_new_privs", "caps_dropped", "seccomp", "landlock_fs", "landlock_net"}
    assert expected | {"landlock_scope", "duckdb_config_locked", "rlimit_as"} <= layers, layers


@needs_layers
def test_a_tcp_connection_to_loopback_is_stopped(jobs, harness, world):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        failure = _attack(
            f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=3)
            """,
            world,
            harness,
        )
        readable, _, _ = select.select([server], [], [], 0.2)
    assert failure.code in {"access_denied", "network_denied"}, failure
    assert readable == [], "nothing reached the listening socket"
    _next_job_runs(jobs, world)


@needs_layers
def test_resolving_a_host_name_is_stopped(jobs, harness, world):
    failure = _attack(
        """
        import socket
        socket.getaddrinfo("example.com", 80)
        """,
        world,
        harness,
    )
    assert failure.code in {"network_denied", "access_denied"}, failure
    _next_job_runs(jobs, world)


@needs_layers
@pytest.mark.parametrize("target", ["/etc/passwd", "key", "other"])
def test_reading_a_file_outside_the_grant_is_stopped(jobs, harness, world, target):
    path = world.get(target, target)
    failure = _attack(f"outcome = open({str(path)!r}, 'rb').read()[:40]", world, harness)
    assert failure.code == "access_denied" and failure.article == "Art. 15", failure
    assert "root:" not in failure.message and "PRIVATE" not in failure.message
    _next_job_runs(jobs, world)


@needs_layers
def test_listing_the_vault_or_proc_is_stopped(jobs, harness, world):
    failure = _attack(f"outcome = __import__('os').listdir({str(world['home'])!r})", world, harness)
    assert failure.code == "access_denied"
    failure = _attack("outcome = open('/proc/1/environ', 'rb').read()", world, harness)
    assert failure.code == "access_denied"
    _next_job_runs(jobs, world)


@needs_layers
def test_writing_outside_the_own_folder_is_stopped(jobs, harness, world, tmp_path):
    escape = tmp_path / "escape.txt"
    failure = _attack(f"open({str(escape)!r}, 'w').write('leak')", world, harness)
    assert failure.code == "access_denied"
    assert not escape.exists()
    _next_job_runs(jobs, world)


def test_allocating_20_gb_is_stopped(jobs, world):
    failure = _attack("outcome = len(bytearray(20 << 30))", world, memory_mb=1024)
    assert failure.code in {"memory_limit", "worker_died"}, failure
    assert "1024 MiB" in failure.message
    _next_job_runs(jobs, world)


def test_a_loop_forever_is_stopped_at_the_time_limit(jobs, world):
    started = time.monotonic()
    failure = _attack("while True:\n    pass", world, time_s=2)
    assert failure.code in {"time_limit", "cpu_limit"}, failure
    assert time.monotonic() - started < 10
    _next_job_runs(jobs, world)


@needs_layers
def test_forking_many_processes_is_stopped(jobs, harness, world):
    failure = _attack(
        """
        import os
        pids = [os.fork() for _ in range(1000)]
        """,
        world,
        harness,
    )
    assert failure.code == "access_denied", failure
    failure = _attack("import subprocess; subprocess.run(['/bin/true'])", world, harness)
    assert failure.code == "access_denied", failure
    _next_job_runs(jobs, world)


@needs_layers
def test_leaving_the_namespaces_is_stopped(jobs, harness, world):
    failure = _attack(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:  # a new network namespace, or setns back out
            raise PermissionError(ctypes.get_errno(), "unshare")
        """,
        world,
        harness,
    )
    assert failure.code == "access_denied", failure
    _next_job_runs(jobs, world)


@needs_layers
def test_a_signal_to_a_process_outside_the_worker_is_stopped(jobs, harness, world):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        failure = _attack(
            f"import os, signal; os.kill({bystander.pid}, signal.SIGKILL)", world, harness
        )
        assert failure.code == "access_denied", failure
        time.sleep(0.1)
        assert bystander.poll() is None, "the bystander (think: the platform) lives"
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()
    _next_job_runs(jobs, world)


def test_what_a_worker_prints_never_reaches_the_operator(jobs, harness, world):
    secret = "SECRET-ROW-0042"
    forged = (
        '{"ok": false, "error": "engine_error:' + secret + '", "message": "' + secret + '", '
        '"layers": ["' + secret + '", "netns"], "woke_at": "' + secret + '"}'
    )
    failure = _attack(
        f"""
        import os, sys
        print({secret!r}); print({secret!r}, file=sys.stderr)
        print({forged!r}, flush=True)
        os._exit(0)
        """,
        world,
        harness,
    )
    assert failure.code == "engine_error"
    assert secret not in str(failure.to_dict())
    _next_job_runs(jobs, world)


# --- the same attacks carried by SQL ----------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_text('{key}')",
        "SELECT * FROM read_blob('{home}/vault/*/*.parquet')",
        "SELECT SUM(x) FROM read_parquet('{other}')",
        "COPY (SELECT 42 AS answer) TO '{escape}'",
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
        "INSTALL httpfs",
        "LOAD httpfs",
    ],
    ids=["key_file", "vault_glob", "other_snapshot", "copy_out", "http", "install", "load"],
)
def test_sql_cannot_reach_beyond_its_grant(jobs, world, tmp_path, sql):
    escape = tmp_path / "escape.csv"
    text = sql.format(key=world["key"], home=world["home"], other=world["other"], escape=escape)
    with pytest.raises(JobFailed) as caught:
        jobs.run(text, {"t": world["granted"]})
    assert caught.value.code in {"access_denied", "engine_error"}, caught.value
    assert "PRIVATE" not in caught.value.message and not escape.exists()
    _next_job_runs(jobs, world)


def test_sql_that_allocates_too_much_is_stopped(jobs, world):
    runner = Runner(Limits(time_s=20, memory_mb=1024))
    try:
        with pytest.raises(JobFailed) as caught:
            runner.run(
                "SELECT length(string_agg(repeat('x', 1000), ',')) FROM range(100000000)",
                {"t": world["granted"]},
            )
    finally:
        runner.close()
    assert caught.value.code in {"memory_limit", "worker_died"}, caught.value
    _next_job_runs(jobs, world)


def test_the_runner_names_missing_layers_at_start_up(caplog):
    caplog.set_level("WARNING", logger="sandbox.run.runner")
    from sandbox.run.runner import EXPECTED_LAYERS, warn_missing_layers

    missing = warn_missing_layers()
    assert set(missing) == set(EXPECTED_LAYERS) - set(available_layers())
    assert len(caplog.records) == len(missing)
    for record in caplog.records:
        assert "job isolation degraded" in record.getMessage()
