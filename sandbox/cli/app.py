"""The whole ``sandbox`` command line: the group of :mod:`sandbox.cli.common` with the
commands each module adds to it (importing a module registers its commands)."""

from sandbox.cli import (  # noqa: F401  (importing a module registers its commands)
    backup,
    data,
    db,
    dp,
    duties,
    he,
    inspections,
    jobs,
    lists,
    models,
    providers,
    psi,
    root,
    serve,
    sources,
    supervision,
    verify,
    workflow,
)
from sandbox.cli.common import main

__all__ = ["main"]

if __name__ == "__main__":  # python -m sandbox.cli.app
    main(prog_name="sandbox")
