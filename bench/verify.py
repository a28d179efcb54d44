"""Benchmark: verification calls over HTTP against a bare FastAPI dict lookup.

Usage::

    python bench/verify.py [--persons 20000] [--requests 6000] [--seconds 20] [--concurrency 64]
    python bench/verify.py --quick       # --persons 2000 --requests 1000 --seconds 5 (make bench)

``verify_*``
    ``POST /v1/verify/identity`` (resident ID + name, with a consent reference) on a
    real ``sandbox serve --workers 2`` on 127.0.0.1: bearer-token check, the agreement
    gate, the index lookup, limits and the enumeration defence, and a ledger entry
    made durable (group commit, ``synchronous=FULL``) before the answer.
``bare_*``
    a FastAPI app with one route that looks the same keys up in a Python dict, on
    uvicorn with 2 workers on the same machine, in the same run: the reference.

The load generator is asyncio httpx with ``--concurrency`` connections, bounded by
``--requests`` and ``--seconds``; loopback only. Lines are ``name: value unit`` and
the ratio of the two throughputs. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import _results  # noqa: E402
import httpx  # noqa: E402
from _results import figure  # noqa: E402
from api_server import ApiServer, free_port  # noqa: E402
from verify_helpers import CONSENT, IDENTITY, make_world  # noqa: E402

from sandbox.core import principals  # noqa: E402
from sandbox.core.ledger import now_utc  # noqa: E402
from sandbox.core.platform import Platform  # noqa: E402
from sandbox.verification import products as verify_products  # noqa: E402

SETTINGS = """
[api]
rate_per_minute = 100000000
[verify]
consumer_per_minute = 100000000
consumer_per_day = 100000000
subject_per_day = 1000000
miss_min_calls = 100000000
guess_ids_throttle = 100000000
guess_ids_block = 100000000
value_per_hour = 100000000
value_per_day = 100000000
subject_lifetime = 100000000
"""

BARE = """
import json
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
with open({table!r}, encoding="utf-8") as fh:
    NAMES = json.load(fh)

class Body(BaseModel):
    keys: dict[str, str]
    consent: dict | None = None

@app.post("/lookup")
def lookup(body: Body) -> dict:
    name = NAMES.get(body.keys["pid"])
    code = "not_found" if name is None else ("match" if name == body.keys["name"] else "mismatch")
    return {{"code": code}}
"""


def setup(
    root: Path, persons: int, store_url: str | None = None, prefix: str = ""
) -> tuple[Path, dict[str, str], list[tuple[str, str]]]:
    """A home with the identity product approved; ``store_url`` puts its store on that
    PostgreSQL database (bench/api.py), ``prefix`` goes before the figure's name."""
    home = root / "home"
    home.mkdir(mode=0o700, parents=True)
    store = f'\n[store]\nurl = "{store_url}"\n' if store_url else ""
    (home / "sandbox.toml").write_text(SETTINGS + store, encoding="utf-8")
    platform = Platform.init(home)

    def make(name, role, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    world = make_world(platform, make, root / "data", persons=persons)
    verify_products.define(platform, world.operator, IDENTITY)
    built = verify_products.approve(platform, world.city, "identity")
    rows = f"{built['index_rows']} rows"
    figure(f"{prefix}index_build", built["build_seconds"], "s", rows, fmt=".2f")
    data = world.tables["persons"].to_pydict()
    pairs = list(zip(data["pid"], data["name"], strict=True))
    platform.close()
    return home, world.tokens, pairs


async def load(url: str, headers: dict, bodies: list[dict], args) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + args.seconds
    counter = iter(range(args.requests))
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60.0) as client:

        async def one() -> None:
            nonlocal failures
            for i in counter:
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                response = await client.post(url, json=bodies[i % len(bodies)])
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


def report(name: str, elapsed: float, latencies: list[float], failures: int) -> float:
    rps = len(latencies) / elapsed
    cuts = statistics.quantiles(latencies, n=100)
    figure(f"{name}_calls", len(latencies), "calls")
    figure(f"{name}_rps", rps, "calls/s", fmt=".0f")
    figure(f"{name}_p50", cuts[49] * 1000, "ms", fmt=".1f")
    figure(f"{name}_p99", cuts[98] * 1000, "ms", fmt=".1f")
    figure(f"{name}_failures", failures, "calls")
    return rps


def bare_server(root: Path, pairs: list[tuple[str, str]]) -> tuple[subprocess.Popen, str]:
    import json

    table = root / "names.json"
    table.write_text(json.dumps(dict(pairs)), encoding="utf-8")
    (root / "bare_app.py").write_text(textwrap.dedent(BARE.format(table=str(table))))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=str(root),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/openapi.json", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the bare server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=6_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = _results.parse_args(parser, {"persons": 2000, "requests": 1000, "seconds": 5.0})
    with _results.recording(__file__, args):
        run(args)


def run(args: argparse.Namespace) -> None:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home, tokens, pairs = setup(root, args.persons)
        sample = rng.sample(pairs, min(len(pairs), 5000))
        bodies = [{"keys": {"pid": p, "name": n}, "consent": CONSENT} for p, n in sample]
        with ApiServer(home, workers=2) as server:
            headers = {"Authorization": f"Bearer {tokens['consumer']}"}
            url = server.url + "/v1/verify/identity"
            warm = argparse.Namespace(**{**vars(args), "requests": 200, "seconds": 10})
            asyncio.run(load(url, headers, bodies, warm))
            verify_rps = report("verify", *asyncio.run(load(url, headers, bodies, args)))
        proc, bare_url = bare_server(root, pairs)
        try:
            warm = argparse.Namespace(**{**vars(args), "requests": 200, "seconds": 10})
            asyncio.run(load(bare_url + "/lookup", {}, bodies, warm))
            bare_rps = report("bare", *asyncio.run(load(bare_url + "/lookup", {}, bodies, args)))
        finally:
            proc.terminate()
            proc.wait(15)
    figure("verify_vs_bare", verify_rps / bare_rps, "ratio", fmt=".2f")


if __name__ == "__main__":
    main()
