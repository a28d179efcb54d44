"""The job worker: the only process that ever runs an operator's SQL.

Started by :mod:`sandbox.runner` as ``python -m sandbox.worker --cpu S --mem MB
--fsize MB`` in a fresh, empty working folder with a scrubbed environment. In
this order, before it reads its task, it

1. sets its resource limits (CPU seconds, address space, open files, file
   size, no core dumps);
2. leaves the network: a new, empty network namespace (``unshare``), where the
   platform runs as root or user namespaces are available;
3. imports DuckDB and pyarrow (so a pre-started spare worker is warm).

Then it reads one JSON task from standard input: the SQL (already admitted and
rewritten by the platform), the granted snapshots as ``{table: path}``, thread
and memory limits and the output-row cap. It registers each snapshot as a lazy
``pyarrow.dataset``, turns DuckDB's external access off and locks its
configuration (no ``read_csv``, ``COPY``, ``ATTACH``, ``INSTALL``, ``SET``
from here on), runs the query, and writes the result as an Arrow IPC file
``result.arrow`` in its working folder. It answers with one JSON status line on
standard output. Engine messages never travel back verbatim (they can quote
data): only the error's kind does.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import sys
import time

RESULT_NAME = "result.arrow"
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


def _limit(kind: int, value: int) -> None:
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(kind)
        if hard == resource.RLIM_INFINITY or value < hard:
            resource.setrlimit(kind, (value, hard if hard != resource.RLIM_INFINITY else value))


def apply_limits(cpu_s: int, mem_mb: int, fsize_mb: int, nofile: int = 256) -> list[str]:
    _limit(resource.RLIMIT_CPU, cpu_s)
    _limit(resource.RLIMIT_AS, mem_mb << 20)
    _limit(resource.RLIMIT_FSIZE, fsize_mb << 20)
    _limit(resource.RLIMIT_NOFILE, nofile)
    _limit(resource.RLIMIT_CORE, 0)
    return ["rlimit_cpu", "rlimit_as", "rlimit_fsize", "rlimit_nofile", "no_core_dumps"]


def leave_network() -> str | None:
    """Enter a new network namespace (loopback only, down). Returns the layer name or None."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if libc.unshare(CLONE_NEWNET) == 0:
        return "netns"
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return "userns+netns"
    return None


def _error_kind(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or "OutOfMemory" in name:
        return "memory_limit"
    if "Permission" in name:
        return "access_denied"
    if "Interrupt" in name:
        return "interrupted"
    return "engine_error:" + name


def run_task(task: dict) -> dict:
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds

    started = time.perf_counter()
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": int(task["threads"]),
            "memory_limit": f"{int(task['memory_limit_mb'])}MB",
            "temp_directory": "",
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    for table, path in task["tables"].items():
        con.register(table, ds.dataset(path, format="parquet"))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    task["_layers"].extend(["duckdb_external_access_off", "duckdb_config_locked"])
    max_rows = int(task["max_rows"])
    reader = con.execute(task["sql"]).to_arrow_reader(8192)
    batches, rows = [], 0
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            return {
                "ok": False,
                "error": "output_rows",
                "message": f"the query yields more than {max_rows} output rows",
            }
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=reader.schema)
    with pa.OSFile(RESULT_NAME, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return {"ok": True, "rows": rows, "engine_s": round(time.perf_counter() - started, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sandbox.worker")
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--mem", type=int, required=True)
    parser.add_argument("--fsize", type=int, required=True)
    args = parser.parse_args(argv)
    layers = apply_limits(args.cpu, args.mem, args.fsize)
    net = leave_network()
    if net:
        layers.append(net)
    import duckdb  # noqa: F401  (warm the spare before its task arrives)
    import pyarrow.dataset  # noqa: F401

    raw = sys.stdin.readline()
    woke = time.time()
    try:
        task = json.loads(raw)
    except ValueError:
        status = {"ok": False, "error": "bad_task", "message": "the worker received no valid task"}
    else:
        task["_layers"] = layers
        try:
            status = run_task(task)
        except BaseException as exc:  # the parent must always get a status line
            status = {
                "ok": False,
                "error": _error_kind(exc),
                "message": "the engine stopped the query",
            }
    status["layers"] = layers + ["scrubbed_env", "own_workdir"]
    status["woke_at"] = woke
    sys.stdout.write(json.dumps(status) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
