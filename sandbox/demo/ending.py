"""The demo's last steps: a provider supervises the use of its data, and the agreement ends.

Step 12 (Art. 4, 5, 24): the provider of one granted dataset lists what uses it,
suspends that use under the agreement (the job gate then refuses the operator's next
job on it, and the operator is told), and lifts the suspension. Step 13 (Art. 8, 13):
the demo moves its clock to the agreement's term end and runs the platform's tick, as
the server does every minute: the agreement expires, its disposal clause deletes every
product made under it and the verification indexes of ended agreements, the operator's
product list empties, and a backup of the home is written and checked afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from policies.errors import PolicyRefusal
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.data.backup import backup, check_backup
from sandbox.data.grants import may_run
from sandbox.data.products import list_products
from sandbox.registry.base import parse_time
from sandbox.registry.inbox import inbox_of
from sandbox.verification.disposal import dispose_indexes
from sandbox.workflow import agreements, providers, scheduler


def demo_provider(
    platform: Platform,
    echo: Callable[[str], None],
    provider: Principal,
    operator: Principal,
    dataset: str,
    agreement_id: int,
) -> None:
    """Step 12: what uses the provider's data, and a suspension of that use, lifted."""
    echo(f"== 12. A provider supervises the use of its data (Art. 4, 5, 24): {provider.name}")
    with platform.store.read() as conn:
        uses = providers.uses_of(conn, provider)
    echo(
        f"   {dataset} is used by agreements {[a['id'] for a in uses['agreements']]}, "
        f"{len(uses['jobs'])} jobs and {len(uses['products'])} products"
    )
    held = providers.suspend_use(
        platform, provider, agreement_id, dataset, "a household disputes its records"
    )
    echo(f"   {provider.name} suspends the use of {dataset} under agreement {agreement_id}: "
         f"grants {held['grants']} suspended, jobs cancelled {held['cancelled_jobs']}")  # fmt: skip
    with platform.store.read() as conn:
        try:
            may_run(conn, operator, [dataset], "sql_aggregate")
            echo("   the operator's next job on it would run (unexpected)")
        except PolicyRefusal as refusal:
            echo(f"   the operator's next job on {dataset} -> refused [{refusal.rule}] "
                 f"({refusal.article})")  # fmt: skip
    told = inbox_of(platform, operator, kind="data_use_suspended")["items"]
    echo(f"   {operator.name}'s inbox: {told[0]['kind']} about {told[0]['subject']}")
    providers.lift_use(platform, provider, agreement_id, dataset, "records checked")
    echo(f"   {provider.name} lifts the suspension: the grants are active again")


def demo_ending(
    platform: Platform,
    echo: Callable[[str], None],
    operator: Principal,
    agreement_id: int,
    folder: Path,
) -> None:
    """Step 13: the term ends, the tick expires and disposes, the home backs up."""
    with platform.store.read() as conn:
        until = agreements.agreement_dict(conn, operator, agreement_id)["term"]["until"]
        before = len(list_products(conn, operator))
    end = parse_time(until) + timedelta(seconds=1)
    echo(f"== 13. The agreement's end (Art. 8, 13): the demo's clock moves to {until}")
    done = scheduler.tick(platform, now=end)
    disposed = done["disposed"].get(agreement_id, [])
    indexes = dispose_indexes(platform)
    echo(f"   the platform's tick expires agreements {done['expired']}: the disposal clause "
         f"deletes {len(disposed)} products, verification indexes {indexes or 'none'}")  # fmt: skip
    with platform.store.read() as conn:
        after = len(list_products(conn, operator))
    echo(f"   {operator.name} lists {after} products (before: {before})")
    report = backup(platform, folder)
    check_backup(folder)
    echo(f"   backup after the disposal: {report.files} files, {report.products} products, "
         f"{report.ledger_entries} ledger entries, checked ({folder})")  # fmt: skip
