"""Benchmark: the differencing check of one new cell against a growing released history.

Usage::

    python bench/differencing.py [--entities 1000000] [--sizes 1000 10000 100000] [--checks 40]
    python bench/differencing.py --quick # --sizes 1000 10000 --checks 20 (make bench)

The history is built the way releases build it: groupings of a synthetic
population of ``--entities`` entities (random group labels with 100, 1,000 or
5,000 groups per grouping), each grouping adding one cell per group, until the
history holds the wanted number of cells. For each size it times
:func:`policies.differencing.check` (all four conditions, on the in-memory
:class:`~policies.differencing.HistoryIndex`) for new cells of three kinds:

``check_attack``
    a released cell less three entities (N versus N-3): suppressed;
``check_fresh``
    a cell of a new grouping of the same population: passes (the common case);
``check_big``
    a quarter of the population (a large margin): passes, the widest candidate sets;

and the reference ``xor_one`` (one exact symmetric-difference count against one
released cell of the same size), so ``ratio`` says how many exact pair tests one
check costs. ``index_add`` is the time to add one cell to the index (loading the
history at start-up costs this per cell). Nothing here is asserted; the issue's
aim is printed beside the figures: under 50 ms per cell at 100,000 cells.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import _results
import numpy as np
from _results import figure
from pyroaring import BitMap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.differencing import DiffVerdict, HistoryIndex, check  # noqa: E402

K = 10


def grouping(rng: np.random.Generator, entities: int, groups: int) -> list[BitMap]:
    labels = rng.integers(0, groups, entities)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(groups + 1))
    return [
        BitMap(order[bounds[g] : bounds[g + 1]].astype(np.uint32))
        for g in range(groups)
        if bounds[g + 1] > bounds[g]
    ]


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def measure(index: HistoryIndex, rng: np.random.Generator, args) -> dict[str, float]:
    """Median times of the three kinds of check and of one exact pair test."""
    fresh = grouping(rng, args.entities, 1000)
    victims = [index.cells[int(i)] for i in rng.integers(0, len(index), args.checks)]
    attacks = [v - BitMap(list(v)[:3]) for v in victims]
    big = BitMap(np.flatnonzero(rng.random(args.entities) < 0.25).astype(np.uint32))
    same = [c for c in index.cells if abs(len(c) - len(attacks[0])) < K] or index.cells
    it = iter(range(10**9))

    def attack():
        found = check(attacks[next(it) % len(attacks)], index, K)
        assert found.verdict is DiffVerdict.SUPPRESS

    def benign():
        found = check(fresh[next(it) % len(fresh)], index, K)
        assert found.verdict is DiffVerdict.PASS

    results = {
        "check_attack": timed(attack, args.checks),
        "check_fresh": timed(benign, args.checks),
        "check_big": timed(lambda: check(big, index, K), max(3, args.checks // 10)),
        "xor_one": timed(lambda: attacks[0].symmetric_difference_cardinality(same[0]), 200),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--checks", type=int, default=40)
    quick = {"sizes": [1_000, 10_000], "checks": 20}
    args = _results.parse_args(parser, quick)
    with _results.recording(__file__, args):
        run(args)


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(20240611)
    index = HistoryIndex()
    figure("entities", args.entities)
    figure("k", K)
    for size in sorted(args.sizes):
        start = time.perf_counter()
        added = len(index)
        while len(index) < size:
            for cell in grouping(rng, args.entities, int(rng.choice([100, 1000, 5000]))):
                if len(index) >= size:
                    break
                index.add(cell)
        add_ms = (time.perf_counter() - start) * 1000 / max(1, len(index) - added)
        results = measure(index, rng, args)
        cells = len(index)
        print(f"# history_cells={cells}", flush=True)
        figure(f"{cells}_index_add", add_ms, "ms/cell")
        for name, value in results.items():
            figure(f"{cells}_{name}", value, "ms")
        worst = max(results["check_attack"], results["check_fresh"], results["check_big"])
        figure(
            f"{cells}_ratio_worst_check_to_xor_one",
            worst / max(results["xor_one"], 1e-6),
            "x",
            fmt=".0f",
        )
        figure(
            f"{cells}_worst_check",
            worst,
            "ms",
            "aim: under 50 ms per cell at 100,000 cells",
            fmt=".1f",
        )


if __name__ == "__main__":
    main()
