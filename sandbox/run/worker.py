"""The job worker: the only process that ever runs an operator's SQL.

Started by :mod:`sandbox.run.runner` as ``python -m sandbox.run.worker --cpu S --mem MB
--fsize MB`` in a fresh, empty working folder with a scrubbed environment. In
this order, before it reads its task, it (:func:`sandbox.run.isolation.isolate`)

1. sets its resource limits (CPU seconds, address space, open files, file
   size, no core dumps);
2. leaves the network: a new, empty network namespace (``unshare``), where the
   platform runs as root or user namespaces are available;
3. sets ``no_new_privs`` and drops every capability (a root worker keeps uid 0
   but loses ``CAP_SYS_ADMIN``, ``CAP_DAC_OVERRIDE``, ...);
4. installs a seccomp filter (x86-64): no ``fork``/``vfork``/``execve``, no
   ``clone`` except of threads, no mounts, namespaces, ptrace, BPF, keyrings,
   io_uring or module loading; so no fork bomb and no escape from the
   namespaces;
5. imports DuckDB and pyarrow (so a pre-started spare worker is warm).

Then it reads one JSON task from standard input: the SQL (already admitted and
rewritten by the platform), the granted snapshots as ``{table: path}``, thread
and memory limits and the output-row cap. Before it opens anything of the task
it confines itself with Landlock (:func:`sandbox.run.isolation.confine`): from here on it can read
only the Python installation and the granted snapshot files, write only its
own folder, make no TCP connection, and send no signal to a process outside
itself. It makes each snapshot a view over ``read_parquet``, allows DuckDB to
open exactly those files (``allowed_paths``), turns DuckDB's external access off and locks its configuration (no ``read_csv``,
``COPY``, ``ATTACH``, ``INSTALL``, ``SET`` from here on), runs the query, and
writes the result as an Arrow IPC file ``result.arrow`` in its working folder.
It answers with one JSON status line on standard output. Engine messages never
travel back verbatim (they can quote data): only the error's kind does.

Every layer that could not be set up is simply missing from the ``layers``
list of the answer; the runner warns at start-up and the ledger records the
layers of each job. ``docs/security.md`` says what each layer stops.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path

from sandbox.guard.evidence import fold_entities
from sandbox.run.isolation import (
    confine,
    isolate,
)

RESULT_NAME = "result.arrow"


def _error_kind(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or "OutOfMemory" in name:
        return "memory_limit"
    if isinstance(exc, OSError) and exc.errno in (
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTUNREACH,
        errno.ECONNREFUSED,
    ):
        return "network_denied"
    if "gaierror" in name:
        return "network_denied"
    if "Permission" in name or (isinstance(exc, OSError) and exc.errno in (errno.EACCES,)):
        return "access_denied"
    if isinstance(exc, OSError) and exc.errno == errno.EPERM:
        return "access_denied"
    if "Interrupt" in name:
        return "interrupted"
    return "engine_error:" + name


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(task: dict):
    """A DuckDB connection over the task's granted snapshots and nothing else: each a
    view, external access off, the configuration locked (the layers are noted in
    ``task["_layers"]``). The model worker (``sandbox.models.worker``) reads through it too."""
    import duckdb

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
    # DuckDB reads the granted snapshots itself (faster than through Arrow); it may
    # open exactly these files once external access is off, and nothing else. A table
    # may be several files (the entity numbering's segments).
    con.execute("SET allowed_paths = $paths", {"paths": task_paths(task)})
    for table, path in task["tables"].items():
        files = ", ".join(_text(p) for p in ([path] if isinstance(path, str) else path))
        con.execute(f"CREATE VIEW {_ident(table)} AS SELECT * FROM read_parquet([{files}])")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    task["_layers"].extend(["duckdb_external_access_off", "duckdb_config_locked"])
    return con


def run_task(task: dict) -> dict:
    import pyarrow as pa

    started = time.perf_counter()
    con = connect(task)
    max_rows = int(task["max_rows"])
    reader = con.execute(task["sql"]).to_arrow_reader(8192)
    assert reader is not None  # a SELECT always has a result to read
    batches, rows = [], 0
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            return {
                "ok": False,
                "error": "output_rows",
                "message": f"the query yields more than {max_rows} output rows",
            }
        batches.append(fold_entities(batch))
    schema = batches[0].schema if batches else fold_entities(reader.schema.empty_table()).schema
    table = pa.Table.from_batches(batches, schema=schema)
    with pa.OSFile(RESULT_NAME, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return {"ok": True, "rows": rows, "engine_s": round(time.perf_counter() - started, 4)}


def task_paths(task: dict) -> list[str]:
    """Every file the task's tables read (a table is one path or a list of paths)."""
    out: list[str] = []
    for path in task["tables"].values():
        out += [str(path)] if isinstance(path, str) else [str(p) for p in path]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sandbox.run.worker")
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--mem", type=int, required=True)
    parser.add_argument("--fsize", type=int, required=True)
    return parser.parse_args(argv)


def serve(argv: list[str] | None, run=run_task) -> None:
    """The worker's life: isolate, warm up, read one task, confine, ``run`` it, answer, exit.

    ``run`` takes the task (with ``_layers``, the layers in force, to extend)
    and returns the status dict. The test harness passes its own ``run``; the
    set-up around it is this function's, so it is exactly a job's.
    """
    args = parse_args(argv)
    layers = isolate(args.cpu, args.mem, args.fsize)
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
            layers += confine([Path(p) for p in task_paths(task)], Path.cwd())
            status = run(task)
        except BaseException as exc:  # the parent must always get a status line
            status = {
                "ok": False,
                "error": _error_kind(exc),
                "message": "the engine stopped the query",
                # for the host's log only (it may quote data): never shown to the operator
                "host_detail": f"{type(exc).__name__}: {exc}"[:2000],
            }
    status["layers"] = layers + ["scrubbed_env", "own_workdir"]
    status["woke_at"] = woke
    sys.stdout.write("\n" + json.dumps(status) + "\n")
    sys.stdout.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    serve(argv)
    return 0


if __name__ == "__main__":
    main()
