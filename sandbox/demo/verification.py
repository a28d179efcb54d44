"""The demo's verification part: two products published, calls, and a blocked guessing run.

Called by the demo (``sandbox/demo/flow.py``) after the demo tables are registered::

    from sandbox.demo.verification import demo_verify
    demo_verify(platform, echo, authority=authority, providers=providers,
                reviewers=reviewers, consumer=consumer, auditor=auditor)

It adds its own operator (an identity-check firm) and signs it an agreement whose
scope includes job kind ``verification`` on persons, enterprises and
social_insurance, so the demo's other agreement (and its suspension) is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq

from connectors.validity import resident_id_check_char
from policies.errors import PolicyRefusal, SandboxError
from policies.workflow import Disposal
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, add_principal
from sandbox.data.vault import get_version
from sandbox.verification import audit as verify_audit
from sandbox.verification import products as verify_products
from sandbox.verification import service as verification
from sandbox.workflow import agreements, applications, notices, requests, reviews

TABLES = ("persons", "enterprises", "social_insurance")

IDENTITY: dict[str, Any] = {
    "name": "identity",
    "dataset": "persons",
    "keys": ["pid", "name"],
    "codes": ["match", "mismatch", "not_found"],
    "description": "does this name belong to this resident ID number?",
    "rule": (
        "SELECT CASE WHEN COUNT(*) = 0 THEN 'not_found' "
        "WHEN SUM(CASE WHEN name = $name THEN 1 ELSE 0 END) > 0 THEN 'match' "
        "ELSE 'mismatch' END FROM persons WHERE pid = $pid"
    ),
}

SOCIAL_INSURANCE: dict[str, Any] = {
    "name": "si_paid_6_of_12",
    "dataset": "enterprises",
    "keys": ["credit_code"],
    "codes": ["yes", "no", "not_found"],
    "miss_codes": ["not_found"],
    "description": "has this enterprise paid social insurance in at least 6 of the last 12 months?",
    "rule": (
        "SELECT CASE WHEN COUNT(DISTINCT e.credit_code) = 0 THEN 'not_found' "
        "WHEN COUNT(DISTINCT CASE WHEN s.month >= DATE '2025-01-01' THEN s.month END) >= 6 "
        "THEN 'yes' ELSE 'no' END "
        "FROM enterprises e LEFT JOIN social_insurance s ON s.credit_code = e.credit_code "
        "WHERE e.credit_code = $credit_code"
    ),
}

CONSENT = {
    "reference": "JRCB-KYC-2025-000417",
    "who": "subject",
    "purpose": "opening a savings account",
    "given_at": "2025-12-30",
}


def _principal(platform: Platform, name: str, role: Role, org: str) -> Principal:
    return add_principal(platform, name, role, org)[0]


def _agreement(platform, authority, operator, providers, reviewers) -> int:
    now = datetime.now(UTC)
    notice = notices.publish(
        platform,
        authority,
        title="Identity and social-insurance verification",
        domain="finance",
        scenario="coded checks for account opening and small-business lending",
        datasets=list(TABLES),
        conditions="a licensed identity-verification firm",
        deadline=now + timedelta(days=30),
    )
    application = applications.apply(
        platform,
        operator,
        notice,
        scenario="ID + name checks for banks; enterprise social-insurance checks for lenders",
        datasets={t: None for t in TABLES},
        security_measures="MLPS level 3; answers are codes only",
        security_officer="Li Na",
        incident_plan="stop all products, report to the authority within one hour",
        job_kinds=["verification"],
        product_kinds=["verification"],
    )
    reviews.appoint(platform, authority, application, [r.name for r in reviewers])
    for reviewer in reviewers:
        reviews.score(platform, reviewer, application, capability=85, scenario=80, security=88)
    agreement = agreements.sign(
        platform,
        authority,
        application,
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(days=365),
        rights_duties="verification products on the three datasets only",
        security_requirements="codes only; consent for person-level checks",
        exit_conditions="at term end, on breach",
        breach_liability="suspension, then termination",
        disposal=Disposal.DELETE,
    )
    for table in TABLES:
        rid = requests.request_data(platform, operator, agreement, table, purpose="verification")
        requests.approve(platform, providers[table], rid)
    return agreement


def demo_verify(
    platform: Platform,
    echo: Callable[[str], None],
    *,
    authority: Principal,
    providers: Mapping[str, Principal],
    reviewers: Sequence[Principal],
    consumer: Principal,
    auditor: Principal | None = None,
) -> dict[str, Any]:
    """Publish the two products, make calls, show a guessing run blocked; returns figures."""
    echo("== Verification products (数据核验, Art. 4, 19)")
    operator = _principal(platform, "jining_idcheck", Role.OPERATOR, "Jining ID Check Ltd")
    agreement = _agreement(platform, authority, operator, providers, reviewers)
    echo(f"   agreement {agreement} for {operator.name} covers job kind 'verification'")
    for definition in (IDENTITY, SOCIAL_INSURANCE):
        made = verify_products.define(platform, operator, definition)
        built = verify_products.approve(platform, authority, definition["name"])
        echo(
            f"   {made['name']}: keys {', '.join(definition['keys'])}; codes "
            f"{'/'.join(definition['codes'])}; approved by {authority.name}; index of "
            f"{built['index_rows']:,} rows built in {built['build_seconds']:.1f} s"
        )
    with platform.store.read() as conn:
        persons = pq.read_table(
            get_version(conn, platform, "persons").path, columns=["pid", "name"]
        )
        firms = pq.read_table(
            get_version(conn, platform, "enterprises").path, columns=["credit_code"]
        )
    pid, name = persons.column("pid")[0].as_py(), persons.column("name")[0].as_py()
    other_name = persons.column("name")[1].as_py()
    service = verification.service_for(platform)
    checks = [
        ("the right name", {"pid": pid, "name": name}),
        ("another name", {"pid": pid, "name": other_name if other_name != name else name + "明"}),
        ("lower-case x, full-width digits", {"pid": _full_width(pid.lower()), "name": name}),
    ]
    for words, keys in checks:
        answer = service.call(consumer, "identity", [{"keys": keys}], CONSENT)
        echo(f"   {consumer.name} asks identity with {words}: {answer.code}")
    try:
        service.call(consumer, "identity", [{"keys": {"pid": pid, "name": name}}])
    except PolicyRefusal as refusal:
        echo(f"   without a consent reference: refused [{refusal.rule}] ({refusal.article})")
    codes = firms.column("credit_code").to_pylist()[:200]
    batch = service.call(consumer, "si_paid_6_of_12", [{"keys": {"credit_code": c}} for c in codes])
    tally: dict[str | None, int] = {}
    for r in batch.results:
        tally[r.code or r.refused] = tally.get(r.code or r.refused, 0) + 1
    echo(f"   a batch of {len(codes)} enterprises: {tally} (dataset versions {batch.versions})")

    guesser = _principal(platform, "shady_lender", Role.CONSUMER, "Shady Lending Co")
    outcome, tried = _guess(service, guesser, pid, name)
    echo(
        f"   {guesser.name} tries up to 1,000 ID numbers for one name: {outcome} after "
        f"{tried} attempts"
    )
    notes = [
        n
        for n in verify_audit.stats(platform, authority, "identity")["standing"]
        if n["consumer"] == guesser.name
    ]
    for note in notes:
        echo(f"   the authority sees: {note['consumer']} {note['standing']} ({note['reason']})")
    found = []
    if auditor is not None:
        found = verify_audit.who(platform, auditor, {"pid": pid}, "identity")
        echo(
            f"   {auditor.name} asks who verified the subject: "
            + ", ".join(f"{r['consumer']} ({r['code'] or r['refused']})" for r in found)
        )
    return {"agreement": agreement, "guessing": outcome, "tried": tried, "audit_rows": len(found)}


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text[:6]) + text[6:]


def _guess(service, guesser: Principal, true_pid: str, name: str) -> tuple[str, int]:
    tried = 0
    for seq in range(1000):
        first = true_pid[:14] + f"{(int(true_pid[14:17]) + 1 + seq) % 1000:03d}"
        pid = first + resident_id_check_char(first)
        tried += 1
        try:
            answer = service.call(
                guesser,
                "identity",
                [{"keys": {"pid": pid, "name": name}}],
                dict(CONSENT, reference=f"SHADY-{seq}"),
            )
        except PolicyRefusal as refusal:
            if refusal.rule == "enumeration_blocked":
                return "blocked", tried
            raise
        except SandboxError:
            continue  # throttled: a real script would wait and try again
        if answer.code == "match":
            return "found", tried
    return "gave up", tried
