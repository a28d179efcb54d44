"""Functions the Ray tests run as tasks: Ray workers import them by module name, so they
live in a module of the ``tests`` package rather than in a test file."""

from __future__ import annotations

import os


def negate(value: int) -> int:
    return -value


def crash(_: int) -> int:
    """The Ray worker process dies under the task, as on a lost node."""
    os._exit(3)
