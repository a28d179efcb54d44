"""Where the platform's home is when no ``--home`` is given: ``SANDBOX_HOME``, else
``.sandbox`` in the working folder. A module of its own, light to import: the command
line reads it before it knows whether it opens the platform at all."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("SANDBOX_HOME", ".sandbox"))
