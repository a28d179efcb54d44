"""The model worker: ``python -m sandbox.models.worker --cpu S --mem MB --fsize MB``.

The same process as a SQL job's worker (:func:`sandbox.run.worker.serve`: resource
limits, no network, no new privileges, seccomp, Landlock to the granted snapshots,
a scrubbed environment, its own folder), running the training task
(:func:`sandbox.models.train.train_task`) instead of one query. The runner starts it
with ``worker_module`` set to this module (:class:`sandbox.run.runner.Runner`).
"""

from __future__ import annotations

import sys

from sandbox.models.train import train_task
from sandbox.run.worker import serve


def main(argv: list[str] | None = None) -> int:
    serve(argv if argv is not None else sys.argv[1:], run=train_task)
    return 0


if __name__ == "__main__":
    main()
