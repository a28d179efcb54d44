"""Benchmark: model training through the platform against scikit-learn called directly;
the attack check's time; scoring calls over HTTP against a bare FastAPI lookup.

Usage::

    python bench/model.py [--entities 1000000] [--algorithm gradient_boosting]
                          [--requests 4000] [--seconds 20] [--concurrency 64]
    python bench/model.py --quick      # --entities 100000 --requests 1000 --seconds 5

``train_*``
    :func:`sandbox.models.training.train` of one model (a ``model_train`` job) over ``--entities`` enterprises
    (one row each, 4 features and a 0/1 label, registered in the vault as Parquet):
    admission, a fresh isolated worker, the features query in DuckDB, the split, the fit,
    the held-out evaluation, the structural checks, the attacks, the signed card and
    the scores kept by keyed hash. ``train_without_attacks_s`` is the whole minus the
    attacks' own time (reported as ``attack_check_s``).
``bare_fit_s``
    the same data read from the same Parquet file with pyarrow, the same split and the
    same estimator fitted with scikit-learn in this process: the reference.
``score_*`` / ``bare_*``
    ``POST /v1/score/{service}`` (one subject with its consent) on a real ``sandbox serve
    --workers 2`` on 127.0.0.1 (token check, the agreement gate, the grade lookup, the
    limits and the enumeration defence, the ledger entry made durable by group commit)
    against a FastAPI app that looks the key up in a dict, on uvicorn with 2 workers.

Lines are ``name: value unit`` and the ratios; nothing here asserts a time. The aims
of issue 22: training at most 1.5x the bare fit; scoring at least 0.3x the bare lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import _results  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from _results import figure  # noqa: E402
from api_server import ApiServer, free_port  # noqa: E402
from model_helpers import BANDS, CONSENT, DATASET, FEATURES, make_world  # noqa: E402
from verify import load, report  # noqa: E402

from sandbox.core import principals  # noqa: E402
from sandbox.core.ledger import now_utc  # noqa: E402
from sandbox.core.platform import Platform  # noqa: E402
from sandbox.data.vault import get_version  # noqa: E402
from sandbox.models import services, training  # noqa: E402
from sandbox.models.fit import make_estimator  # noqa: E402

SETTINGS = """
[api]
rate_per_minute = 100000000
[model]
time_limit_s = 3600
[verify]
consumer_per_minute = 100000000
consumer_per_day = 100000000
subject_per_day = 1000000
miss_min_calls = 100000000
value_per_hour = 100000000
value_per_day = 100000000
subject_lifetime = 100000000
"""

PARAMS = {
    "gradient_boosting": {
        "n_estimators": 100,
        "max_depth": 3,
        "learning_rate": 0.1,
        "min_samples_leaf": 100,
    },
    "lightgbm": {
        "n_estimators": 100,
        "max_depth": 4,
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_samples_leaf": 100,
    },
    "decision_tree": {"max_depth": 6, "min_samples_leaf": 100},
    "logistic_regression": {"C": 1.0, "max_iter": 300},
}
COLUMNS = ("capital", "arrears_months", "staff", "bill_mean")

BARE = """
import json
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
with open({table!r}, encoding="utf-8") as fh:
    GRADES = json.load(fh)

class Body(BaseModel):
    items: list[dict]
    consent: dict | None = None

@app.post("/lookup")
def lookup(body: Body) -> dict:
    return {{"results": [{{"code": GRADES.get(i["key"], "not_found")}} for i in body.items]}}
"""


def setup(root: Path, entities: int):
    home = root / "home"
    Platform.init(home).close()
    (home / "sandbox.toml").write_text(SETTINGS, encoding="utf-8")
    platform = Platform.open(home)

    def make(name, role, *, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    started = time.perf_counter()
    world = make_world(platform, make, root / "data", n=entities)
    figure("register_s", time.perf_counter() - started, "s", f"{entities:,} enterprises")
    return platform, world


def bare_fit(path: Path, algorithm: str, params: dict, seed: int) -> float:
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    table = pq.read_table(path)
    x = np.column_stack([table.column(c).to_numpy().astype(float) for c in COLUMNS])
    y = table.column("defaulted").to_numpy().astype(np.int64)
    x_tr, _, y_tr, _ = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    make_estimator(algorithm, params, seed).fit(x_tr, y_tr)
    return time.perf_counter() - started


def bare_server(root: Path, grades: dict[str, str]) -> tuple[subprocess.Popen, str]:
    table = root / "grades.json"
    table.write_text(json.dumps(grades), encoding="utf-8")
    (root / "bare_app.py").write_text(textwrap.dedent(BARE.format(table=str(table))))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--log-level", "warning"],
        env=env, cwd=str(root), start_new_session=True,
    )  # fmt: skip
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


def train(platform: Platform, world, args) -> None:
    params = PARAMS[args.algorithm]
    request = {
        "name": "bench_model",
        "features": FEATURES,
        "label": "defaulted",
        "algorithm": args.algorithm,
        "params": params,
    }
    started = time.perf_counter()
    out = training.train(platform, world.operator, request)
    total = time.perf_counter() - started
    timings = out["timings"]
    figure("train_total_s", total, "s", f"{args.algorithm}, verdict {out['card']['verdict']}")
    for name in ("query_s", "fit_s", "attack_s"):
        figure(f"train_{name}", timings.get(name, 0.0), "s")
    without = total - timings.get("attack_s", 0.0)
    figure("train_without_attacks_s", without, "s")
    figure("attack_check_s", timings.get("attack_s", 0.0), "s", "worst case + LiRA")
    with platform.store.read() as conn:
        parquet = get_version(conn, platform, DATASET).path
    bare = bare_fit(parquet, args.algorithm, params, 1)
    figure("bare_fit_s", bare, "s", "pyarrow read + split + fit, in process")
    figure("train_vs_bare", without / bare, "ratio", "aim <= 1.5", fmt=".2f")
    figure("holdout_auc", out["card"]["evaluation"]["auc"], "", fmt=".3f")


def scoring(root: Path, platform: Platform, world, args) -> None:
    started = time.perf_counter()
    services.define(platform, world.operator, {"name": "bench_grades", "model": "bench_model",
                                               "bands": BANDS})  # fmt: skip
    built = services.approve(platform, world.city, "bench_grades")
    figure("index_build_s", time.perf_counter() - started, "s", f"{built['index_rows']:,} rows")
    codes = world.table.column("credit_code").to_pylist()
    sample = random.Random(1).sample(codes, min(len(codes), 5000))
    bodies = [
        {"items": [{"key": c}], "consent": {**CONSENT, "reference": f"B-{i}"}}
        for i, c in enumerate(sample)
    ]
    home = platform.home
    platform.close()
    warm = argparse.Namespace(**{**vars(args), "requests": 200, "seconds": 10})
    with ApiServer(home, workers=2) as server:
        headers = {"Authorization": f"Bearer {world.tokens['lender']}"}
        url = server.url + "/v1/score/bench_grades"
        asyncio.run(load(url, headers, bodies, warm))
        score_rps = report("score", *asyncio.run(load(url, headers, bodies, args)))
    proc, bare_url = bare_server(root, {c: "a" for c in sample})
    try:
        asyncio.run(load(bare_url + "/lookup", {}, bodies, warm))
        bare_rps = report("bare", *asyncio.run(load(bare_url + "/lookup", {}, bodies, args)))
    finally:
        proc.terminate()
        proc.wait(15)
    figure("score_vs_bare", score_rps / bare_rps, "ratio", "aim >= 0.3", fmt=".2f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--algorithm", choices=sorted(PARAMS), default="gradient_boosting")
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = _results.parse_args(parser, {"entities": 100_000, "requests": 1000, "seconds": 5.0})
    with _results.recording(__file__, args):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            platform, world = setup(root, args.entities)
            train(platform, world, args)
            scoring(root, platform, world, args)


if __name__ == "__main__":
    main()
