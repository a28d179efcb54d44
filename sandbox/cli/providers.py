"""A provider's commands on the use of its data (Art. 4, 5, 13, 24): ``sandbox provider
uses`` (what uses its datasets), ``provider sign`` (its signature on an agreement for its
own dataset) and ``provider suspend|lift|terminate`` (holds on one use). Added to
``sandbox`` by :mod:`sandbox.cli.app`; each command calls
:meth:`sandbox.cli.common.Context.backend` and prints.
"""

from __future__ import annotations

import click

from sandbox.cli.common import (
    Context,
    as_option,
    as_principal,
    emit,
    json_option,
    main,
    pass_ctx,
    table,
)

# --- providers: the use of their data (Art. 4, 5, 13, 24) ---------------------------------------


@main.group("provider")
def provider_group() -> None:
    """A provider's supervision of the use of its data. Art. 5, 24."""


@provider_group.command("uses")
@as_principal
def provider_uses(obj: Context, token, as_json) -> None:
    """The agreements, grants, jobs and products that use your datasets (providers)."""
    with obj.backend(token) as backend:
        uses = backend.data_uses()
    lines = [
        table(
            [(a["id"], a["operator"], a["status"], ", ".join(a["datasets"]), a["until"][:10])
             for a in uses["agreements"]],
            ("agreement", "operator", "status", "your datasets", "until"),
            right=("agreement",),
            empty="(no agreement uses your datasets)",
        ),
        table(
            [(j["id"], j["operator"], j["kind"], j["state"], ", ".join(j["datasets"]))
             for j in uses["jobs"]],
            ("job", "operator", "kind", "status", "your datasets"),
            right=("job",),
            empty="(no job read your datasets)",
        ),
        table(
            [(p["id"], p["job"], p["operator"]) for p in uses["products"]],
            ("product", "job", "operator"),
            empty="(no product)",
        ),
    ]  # fmt: skip
    emit(uses, as_json, "\n\n".join(lines))


@provider_group.command("sign")
@click.option("--agreement", "agreement_id", type=int, required=True)
@click.option("--dataset", required=True, help="your dataset in the agreement's scope")
@click.option("--terms", required=True, help="the conditions you sign for your data on")
@as_principal
def provider_sign(obj: Context, agreement_id, dataset, terms, token, as_json) -> None:
    """Sign an agreement for your own dataset, with your terms (providers). Art. 4, 13."""
    with obj.backend(token) as backend:
        signed = backend.countersign(agreement_id, dataset, terms)
    emit(signed, as_json, f"signed agreement {agreement_id} for {dataset} at {signed['signed_at']}")


def _hold_command(action: str, doc: str):
    @provider_group.command(action, help=doc)
    @click.option("--agreement", "agreement_id", type=int, required=True)
    @click.option("--dataset", required=True, help="your dataset in the agreement's scope")
    @click.option("--reason", required=True)
    @as_option
    @json_option
    @pass_ctx
    def command(obj: Context, agreement_id, dataset, reason, token, as_json) -> None:
        with obj.backend(token) as backend:
            done = backend.hold_use(action, agreement_id, dataset, reason)
        cancelled = done.get("cancelled_jobs") or []
        emit(
            done,
            as_json,
            f"the use of {dataset} under agreement {agreement_id} is {done['status']} "
            f"(hold {done['hold']}; grants {done['grants'] or 'none'}"
            + (f"; jobs cancelled: {cancelled})" if cancelled else ")"),
        )

    return command


_hold_command("suspend", "Suspend the use of your dataset under an agreement; the jobs reading "
              "it are cancelled, the operator's others go on (providers).")  # fmt: skip
_hold_command("lift", "Lift your suspension: the grants it stopped are active again.")
_hold_command("terminate", "End the use of your dataset under an agreement for good: its grants "
              "are revoked and no new request for it is approved (providers).")  # fmt: skip
