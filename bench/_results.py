"""One recorder for every benchmark: print a figure, keep it, write the run as JSON.

A script builds its ``argparse`` parser with the full sizes as defaults and hands it
to :func:`parse_args` with the sizes of its quick mode; ``--quick`` then swaps the
defaults (an option given on the command line still wins). The measuring part runs
inside :func:`recording`, and every figure goes through :func:`figure`, which prints
the usual ``name: value unit  (note)`` line and keeps the exact value.

When the ``with recording(...)`` block ends without an exception, the run is written
to ``bench/results/<script>-<UTC start>.json`` (``BENCH_RESULTS_DIR`` overrides the
folder) with the figures and the context needed to compare runs later: git commit
and whether the tree had changes, Python, library versions, cores, load average at
start and end, the arguments, start and end times. A run that fails writes nothing,
so a half-finished set of figures is never mistaken for a result.

Nothing recorded holds an absolute path of the machine: the script is named, the
changed files are listed relative to the repository, and paths among the arguments
are written relative to the repository when they lie inside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FORMAT = 1  # bump when the layout of the JSON changes

# Distributions whose versions move the figures; the ones not installed are left out.
LIBRARIES = (
    "jining-sandbox",
    "duckdb",
    "pyarrow",
    "numpy",
    "openmined-psi",
    "tenseal",
    "pyspark",
    "ray",
    "fastapi",
    "uvicorn",
    "httpx",
    "pydantic",
    "sqlalchemy",
    "pyroaring",
)

_run: _Run | None = None


def parse_args(
    parser: argparse.ArgumentParser, quick: dict, argv: list[str] | None = None
) -> argparse.Namespace:
    """Parse with the full sizes as defaults, or with ``quick`` ones under ``--quick``."""
    sizes = ", ".join(f"--{k.replace('_', '-')} {_arg_text(v)}" for k, v in quick.items())
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes for a run of minutes ({sizes}); options given still win",
    )
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


def _arg_text(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def figure(name: str, value, unit: str = "", note: str = "", fmt: str | None = None) -> None:
    """Print ``name: value unit  (note)`` and keep the figure for the run's JSON.

    ``fmt`` formats a number for the printed line only (``".2f"``, ``",.0f"``);
    without it floats print with three decimals. The JSON keeps the exact value.
    """
    if isinstance(value, str):
        text = value
    elif fmt is not None:
        text = format(value, fmt)
    elif isinstance(value, float):
        text = f"{value:.3f}"
    else:
        text = str(value)
    print(f"{name}: {text} {unit}".rstrip() + (f"  ({note})" if note else ""), flush=True)
    if _run is not None:
        _run.figures.append(_entry(name, value, unit, note))


def _entry(name: str, value, unit: str, note: str) -> dict:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    entry = {"name": name, "value": value, "unit": unit}
    if isinstance(value, float) and not math.isfinite(value):
        entry["value"] = None  # JSON has no NaN or infinity
        entry["text"] = str(value)
    if note:
        entry["note"] = note
    return entry


class _Run:
    def __init__(self, script: str, args: argparse.Namespace) -> None:
        self.script = script
        self.args = args
        self.figures: list[dict] = []
        self.started = datetime.now(UTC)
        self.clock = time.perf_counter()
        self.load_start = _loadavg()

    def document(self) -> dict:
        ended = datetime.now(UTC)
        args = {k: _relative(v) for k, v in vars(self.args).items()}
        return {
            "format": FORMAT,
            "script": self.script,
            "mode": "quick" if args.get("quick") else "full",
            "argv": [_relative(a) for a in sys.argv[1:]],
            "args": args,
            "started_utc": _iso(self.started),
            "ended_utc": _iso(ended),
            "duration_s": round(time.perf_counter() - self.clock, 3),
            "git": _git(),
            "python": {
                "version": platform.python_version(),
                "implementation": platform.python_implementation(),
            },
            "libraries": _libraries(),
            "machine": {
                "system": platform.system(),
                "release": platform.release(),
                "arch": platform.machine(),
                "cpu_count": os.cpu_count(),
                "cpus_usable": len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else os.cpu_count(),
                "mem_total_mb": _mem_total_mb(),
            },
            "loadavg_start": self.load_start,
            "loadavg_end": _loadavg(),
            "figures": self.figures,
        }


@contextmanager
def recording(script_file: str, args: argparse.Namespace) -> Iterator[_Run]:
    """Keep the figures printed inside the block; write them as JSON when it ends well."""
    global _run
    script = Path(script_file).stem
    run = _run = _Run(script, args)
    print(f"# {script}: {'quick' if getattr(args, 'quick', False) else 'full'} run", flush=True)
    try:
        yield run
    finally:
        _run = None
    path = _write(run.document())
    print(f"# figures written to {_relative(str(path))}", flush=True)


def _write(document: dict) -> Path:
    folder = Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = document["started_utc"].replace("-", "").replace(":", "")
    text = json.dumps(document, indent=1, allow_nan=False, default=str) + "\n"
    for n in range(100):
        path = folder / f"{document['script']}-{stamp}{f'-{n}' if n else ''}.json"
        try:
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(text)
        except FileExistsError:
            continue
        path.chmod(0o644)  # the platform's imports may have set a umask of 077
        return path
    raise RuntimeError(f"no free file name for {document['script']} in {folder}")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _mem_total_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for row in fh:
                if row.startswith("MemTotal:"):
                    return int(row.split()[1]) // 1024
    except OSError:
        pass
    return None


def _libraries() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _git() -> dict:
    def git(*argv: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return {"commit": None, "dirty": None}
    changed = sorted(row[3:] for row in status.splitlines() if row.strip())
    return {"commit": commit.strip(), "dirty": bool(changed), "changed_files": changed}


def _relative(value):
    """A path-like string inside the repository as a relative path; anything else as is."""
    if isinstance(value, str) and os.path.isabs(value):
        try:
            return str(Path(value).resolve().relative_to(ROOT))
        except ValueError:
            return value
    return value
