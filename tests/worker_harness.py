"""A test-only job worker that runs arbitrary Python instead of SQL.

Run by the attack tests through the real :class:`sandbox.run.runner.Runner`
(``Runner(limits, worker_module="tests.worker_harness")``), so its process is
set up exactly like a job's: the same scrubbed environment, empty folder, new
session, resource limits, network namespace, dropped capabilities, seccomp
filter and Landlock domain, all from :func:`sandbox.run.worker.serve`. Only the
last step differs: the task's ``sql`` is Python source, executed with
``tables`` (the granted ``{name: path}``) in scope; whatever it leaves in
``outcome`` comes back as a one-cell table.

This module is never imported by the platform.
"""

from __future__ import annotations

import sys

from sandbox.run.worker import RESULT_NAME, serve


def run_python(task: dict) -> dict:
    import pyarrow as pa

    scope = {"tables": dict(task["tables"]), "outcome": None}
    exec(compile(task["sql"], "<attack>", "exec"), scope)  # noqa: S102  (the point of the harness)
    table = pa.table({"outcome": [str(scope["outcome"])]})
    with pa.OSFile(RESULT_NAME, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return {"ok": True, "rows": 1}


if __name__ == "__main__":
    serve(sys.argv[1:], run=run_python)
