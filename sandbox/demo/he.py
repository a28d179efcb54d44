"""The demo's HE scene: a bank's loan balances summed by county and industry, encrypted.

:func:`demo_he` is called by the demo (``sandbox.demo.flow``) once the operator holds
a grant on ``enterprises`` whose job kinds include ``he_aggregate`` (the
application and the agreement must name that kind). The bank's customers are a
sample of the registry's credit codes with synthetic balances; the bank keeps
its secret key in its own half (``sandbox.client.he``), the platform's half
(``sandbox.he.service``) sees the keys and ciphertexts only. The plaintext sums are
computed beside, to show the decrypted totals are the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyarrow.parquet as pq

from sandbox.client import he as client_he
from sandbox.data.vault import get_version
from sandbox.he import service as he


def demo_he(
    platform,
    echo: Callable[[str], None],
    operator,
    *,
    dataset: str = "enterprises",
    key_column: str = "credit_code",
    by: tuple[str, ...] = ("county", "industry"),
    share: float = 0.6,
    seed: int = 8,
    show: int = 8,
) -> he.HeAnswer:
    """Run the scene and echo it; returns the platform's answer (metadata and ciphertext)."""
    with platform.store.read() as conn:
        version = get_version(conn, platform, dataset)
    registry = pq.read_table(version.path, columns=[key_column, *by])
    rng = np.random.default_rng(seed)
    picked = np.flatnonzero(rng.random(registry.num_rows) < share)
    rng.shuffle(picked)  # the bank's own order, unrelated to any group
    keys = registry.column(key_column).take(picked).to_pylist()
    balances = rng.lognormal(13.5, 1.2, len(keys)).round(2)
    outsiders = [f"91370800MA{i:08d}" for i in range(25)]  # customers from outside the city
    keys += outsiders
    balances = np.concatenate([balances, rng.lognormal(13.5, 1.2, len(outsiders)).round(2)])

    echo(
        f"== HE: {operator.name} sums its loan balances by {' x '.join(by)} of the "
        f"registry, encrypted under its own key"
    )
    started = time.perf_counter()
    ctx = client_he.make_context("ckks")
    body = client_he.build_request(ctx, dataset, key_column, list(by), keys, balances.tolist())
    encrypted = time.perf_counter() - started
    echo(
        f"   the bank encrypts {len(keys):,} balances in {-(-len(keys) // he.SLOTS)} "
        f"ciphertexts (CKKS, N=8192, 128-bit) and sends {len(body) / 2**20:.1f} MiB: the "
        f"public context (no secret key), its keys, the ciphertexts ({encrypted:.1f} s)"
    )
    answer = he.he_sum(platform, operator, body)
    wire = answer.to_bytes()
    echo(
        f"   the platform joins the keys to {dataset} v{version.version}, sums on ciphertexts "
        f"in {platform.settings.he.processes} processes and answers with one ciphertext of "
        f"{len(wire) / 1024:.0f} KiB ({answer.timings.get('total_s', 0):.1f} s); it never "
        "decrypts"
    )
    result = client_he.decrypt_answer(ctx, wire)
    index = {str(k): i for i, k in enumerate(registry.column(key_column).to_pylist())}
    plain: dict[tuple, float] = {}
    for key, value in zip(keys, balances, strict=True):
        row = index.get(key)
        if row is not None:
            group = tuple(str(registry.column(c)[row].as_py()) for c in by)
            plain[group] = plain.get(group, 0.0) + float(value)
    worst = (
        max(
            (abs(g.sum - plain[tuple(str(v) for v in g.group.values())]) / abs(g.sum))
            for g in result.groups
        )
        if result.groups
        else 0.0
    )
    echo(
        f"   decrypted by the bank: {len(result.groups)} groups released (a group of fewer "
        f"than {answer.header['min_subjects']} enterprises is not listed, like one the "
        "bank's keys never reached; nothing says how many keys matched nothing); largest "
        f"difference to the plaintext sums {worst:.1e} (relative)"
    )
    for g in sorted(result.groups, key=lambda g: -g.sum)[:show]:
        label = " / ".join(str(v) for v in g.group.values())
        echo(f"     {label:<28} {g.subjects:>6,} loans  {g.sum:>18,.2f}  mean {g.mean:>14,.2f}")
    return answer
