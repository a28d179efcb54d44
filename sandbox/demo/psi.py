"""The PSI part of the demo: a bank matches its customers against the enterprise registry.

:func:`demo_psi` is called by the demo (:mod:`sandbox.demo.flow`) after the operation
flow, with an active agreement that includes ``psi_match`` jobs and the
``enterprises`` dataset (column ``credit_code``). It sets the PSI terms as the
authority, then, as the operator, matches a list of 10,000 customers (credit
codes, some typed in lower case or with stray spaces, most not registered) in
cardinality mode, in membership mode and per county, and shows a refused probe
and the ledger's metadata-only entries.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pyarrow.parquet as pq

from policies.errors import PolicyRefusal
from sandbox.client.psi import run_psi
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.data.vault import get_version
from sandbox.psi.service import LocalTransport
from sandbox.psi.terms import set_terms

CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100 characters


def bank_customers(platform: Platform, size: int = 10_000, seed: int = 11) -> tuple[list, int]:
    """A bank's customer list: registered credit codes (some typed carelessly) and codes the
    registry does not hold; returns (list, how many are registered)."""
    with platform.store.read() as conn:
        version = get_version(conn, platform, "enterprises")
    codes = pq.read_table(version.path, columns=["credit_code"]).column(0).to_pylist()
    rng = random.Random(seed)
    registered = rng.sample(codes, min(len(codes) * 3 // 5, size * 3 // 10))
    known = set(codes)
    strangers: set[str] = set()
    while len(strangers) < size - len(registered):
        code = "9137" + "".join(rng.choice(CODE_ALPHABET) for _ in range(14))
        if code not in known:
            strangers.add(code)
    typed = [
        c.lower() if i % 7 == 0 else (f" {c} " if i % 11 == 0 else c)
        for i, c in enumerate(registered)
    ]
    customers = typed + sorted(strangers)
    rng.shuffle(customers)
    return customers, len(registered)


def demo_psi(
    platform: Platform,
    echo: Callable[[str], None],
    operator: Principal,
    authority: Principal,
    agreement_id: int,
    *,
    customers: int = 10_000,
) -> dict:
    """Run the PSI scene; returns the figures it showed."""
    echo("== PSI: a bank matches its customers against the enterprise registry (Art. 15)")
    terms_id = set_terms(
        platform,
        authority,
        dataset="enterprises",
        column="credit_code",
        agreement_id=agreement_id,
        mode="membership",
        min_items=100,
        daily_cap=10,
        group_dimensions=["county"],
        group_threshold=10,
    )
    echo(
        f"   {authority.name} sets PSI terms {terms_id} on enterprises.credit_code: membership "
        "allowed, lists of 100 to 1,000,000, 10 requests a day, counts per county (Art. 13)"
    )
    bank_list, registered = bank_customers(platform, customers)
    echo(
        f"   {operator.name}'s list: {len(bank_list):,} customers ({registered:,} of them "
        "registered; some typed in lower case or with spaces)"
    )
    transport = LocalTransport(platform, operator)
    cache: dict = {}
    t = time.perf_counter()
    counted = run_psi(transport, "enterprises", "credit_code", bank_list, cache=cache)
    echo(
        f"   cardinality: {counted.count:,} of {counted.list_size:,} are registered "
        f"({time.perf_counter() - t:.1f} s; the platform built its encrypted set of version "
        f"{counted.version} in {counted.timings['open']:.1f} s, once)"
    )
    t = time.perf_counter()
    listed = run_psi(
        transport, "enterprises", "credit_code", bank_list, mode="membership", cache=cache
    )
    assert listed.items is not None  # a membership answer carries the matched items
    sample = ", ".join(code[:6] + "********" + code[-4:] for code in listed.items[:3])
    echo(
        f"   membership: {len(listed.items):,} matched codes come back to the bank only "
        f"({time.perf_counter() - t:.1f} s; setup reused), e.g. {sample}"
    )
    grouped = run_psi(transport, "enterprises", "credit_code", bank_list, group_by="county")
    assert grouped.groups is not None  # a grouped answer carries its group counts
    echo("   per county (counties with at least 10 registered enterprises):")
    for county, n in sorted(grouped.groups.items(), key=lambda kv: -kv[1]):
        echo(f"     {county:<12} {n:>6,}")
    try:
        run_psi(transport, "enterprises", "credit_code", bank_list[:5])
    except PolicyRefusal as exc:
        echo(f"   a list of 5 (a probe of single firms) -> refused [{exc.rule}]: {exc}")
    with platform.store.read() as conn:
        entries = [e for e in ledger.query(conn) if e["action"].startswith("psi.")]
    echo(f"   ledger: {len(entries)} PSI entries, metadata only, e.g.:")
    for entry in entries[-2:]:
        details = {k: v for k, v in entry["details"].items() if k != "terms"}
        echo(f"     #{entry['seq']} {entry['action']} by {entry['actor']}: {details}")
    return {
        "list_size": counted.list_size,
        "registered": registered,
        "cardinality": counted.count,
        "membership": len(listed.items),
        "groups": grouped.groups,
    }
