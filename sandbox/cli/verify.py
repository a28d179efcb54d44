"""``sandbox verify ...``: verification products (docs/verification.md).

``define`` (operator), ``approve`` / ``reject`` / ``unblock`` (authority), ``call``
(consumer), ``stats`` and ``who`` (auditor, authority), ``list``. They parse options,
call :meth:`sandbox.cli.common.Context.backend` (:mod:`sandbox.verification` on
the platform's host, or the routes of ``/v1/verify`` with ``--server``) and print.
``unblock`` has no route: it runs on the host only and refuses ``--server``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from policies.errors import InputError
from sandbox.cli.common import (
    Context,
    as_principal,
    definition_option,
    emit,
    main,
    read_json_lines,
    table,
)
from sandbox.cli.offerings import add_decisions


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"{flag} takes NAME=VALUE, e.g. {flag} pid=370811...")
        out[name.strip()] = value
    return out


@main.group()
def verify() -> None:
    """Verification products: coded answers about one subject (Art. 4, 19)."""


@verify.command("define")
@definition_option("name, dataset, keys, codes, rule[, miss_codes, description]")
@as_principal
def define_cmd(obj: Context, definition: dict, token, as_json) -> None:
    """File a product definition (operator); it waits for the authority's approval."""
    with obj.backend(token) as backend:
        out = backend.define_verification(definition)
    emit(
        out,
        as_json,
        f"defined {out['name']} under agreement {out['agreement']}; "
        "waiting for the authority's approval",
    )


add_decisions(
    verify,
    noun="product",
    key="product",
    approve=lambda backend, name: backend.approve_verification(name),
    reject=lambda backend, name, reason: backend.reject_verification(name, reason),
    published=lambda name, out: (
        f"published {name}: {out['index_rows']} index rows from {out['versions']}"
    ),
    builds="its index",
)


@verify.command("call")
@click.argument("product")
@click.option("--key", "keys", multiple=True, help="NAME=VALUE, once per key column")
@click.option(
    "--batch",
    type=click.Path(path_type=Path, exists=True),
    help='JSON lines, one {"keys": {...}[, "consent": {...}]} per subject',
)
@click.option("--consent-ref", help="your reference to the subject's consent record (Art. 19)")
@click.option(
    "--consent-who",
    default="subject",
    show_default=True,
    help="who consented: subject, guardian, ...",
)
@click.option("--purpose", help="the purpose the subject consented to")
@click.option("--consented-at", help="when, ISO date")
@as_principal
def call_cmd(
    obj: Context,
    product,
    keys,
    batch,
    consent_ref,
    consent_who,
    purpose,
    consented_at,
    token,
    as_json,
) -> None:
    """Verify one subject (--key ...) or a batch (--batch FILE) (consumer)."""
    consent = None
    if consent_ref or purpose or consented_at:
        consent = {
            "reference": consent_ref or "",
            "who": consent_who,
            "purpose": purpose or "",
            "given_at": consented_at or "",
        }
    if batch is not None:
        items = read_json_lines(batch)
    elif keys:
        items = [{"keys": _pairs(keys, "--key")}]
    else:
        raise InputError("give --key NAME=VALUE (one subject) or --batch FILE")
    with obj.backend(token) as backend:
        result = backend.call_verification(product, items, consent)
    lines = [
        r["code"] if r["code"] else f"refused [{r['refused']}]: {r['message']}"
        for r in result["results"]
    ]
    emit(
        result,
        as_json,
        "\n".join(lines)
        + f"\n(request {result['request_id']}, versions {dict(result['versions'])})",
    )


@verify.command("stats")
@click.argument("name")
@as_principal
def stats_cmd(obj: Context, name: str, token, as_json) -> None:
    """Calls, codes, refusals, throttled and blocked consumers of a product."""
    with obj.backend(token) as backend:
        out = backend.verification_stats(name)
    emit(out, as_json, json.dumps(out, indent=2, ensure_ascii=False))


@verify.command("who")
@click.option("--key", "keys", multiple=True, required=True, help="NAME=VALUE of the subject")
@click.option("--product", help="only this product")
@as_principal
def who_cmd(obj: Context, keys, product, token, as_json) -> None:
    """Who verified this subject? (auditor, authority; the key is hashed, never stored)"""
    subject = _pairs(keys, "--key")
    with obj.backend(token) as backend:
        rows = backend.who_verified(subject, product)
    text = table(
        [
            (
                r["ts"],
                r["consumer"],
                r["product"],
                r["code"] or r["refused"],
                (r["consent"] or {}).get("reference", "-"),
                r["ledger_seq"],
            )
            for r in rows
        ],
        ("time", "consumer", "product", "answer", "consent", "ledger"),
        empty="no verification of this subject",
    )
    emit(rows, as_json, text)


@verify.command("list")
@as_principal
def list_cmd(obj: Context, token, as_json) -> None:
    """Products you may see."""
    with obj.backend(token) as backend:
        rows = backend.verification_products()
    emit(
        rows,
        as_json,
        table(
            [(r["name"], r["state"], r["description"]) for r in rows],
            ("product", "state", "description"),
            empty="no products",
        ),
    )


@verify.command("unblock")
@click.argument("consumer")
@click.option("--reason", required=True)
@as_principal
def unblock_cmd(obj: Context, consumer: str, reason: str, token, as_json) -> None:
    """Lift the enumeration defence's block of a consumer (authority; on the host only)."""
    from sandbox.verification.products import unblock

    unblock(obj.platform, obj.principal(token), consumer, reason)
    emit(
        {"consumer": consumer, "unblocked": True, "reason": reason},
        as_json,
        f"lifted the block of {consumer}",
    )
