"""HE aggregate jobs, the platform's half: encrypted sums per group of public attributes.

The operator sends (``sandbox.client.he`` builds it) its PUBLIC TenSEAL context,
its list of join keys, and its values encrypted under its own key, packed
``SLOTS`` to a ciphertext in the order of the key list. The platform

1. asks the one gate (``sandbox.data.grants.may_run``, job kind ``he_aggregate``) and
   checks the request against the classification (``jobs.he_aggregate``);
2. refuses a context that holds a secret key, parameters below 128-bit
   security, and ciphertexts that are malformed, oversized, tampered with (the
   body carries a SHA-256 of its frames) or not fresh encryptions under the context;
3. joins the keys to the dataset's snapshot in DuckDB, in this process; keys are
   never logged or ledgered. Keys that match no row, and keys whose rows
   disagree on the group (ambiguous), join no group. With the differencing
   defence on, each row's entity number comes from the version's numbering
   (:mod:`sandbox.guard.numbering`);
4. refuses groups with fewer than ``min_entities`` subjects before anything is
   computed for them;
5. evaluates in ``he.processes`` worker processes (``python -m sandbox.he.evaluate``,
   rlimits, no network), each owning a range of rotation amounts: a value in
   slot ``i`` of group ``g`` must move left by ``r = (i - g) mod W`` (``W``: the
   groups rounded up to a power of two), so per ciphertext and ``r`` a plaintext
   0/1 mask times the ciphertext is accumulated (the only multiplication; CKKS
   ciphertexts ride a mask two at a time, :mod:`sandbox.he.share`), the
   accumulators are rotated into place by Horner's rule (one rotation by 1 per
   ``r``) and slots congruent modulo ``W`` are summed (log2(4096 / W)
   rotations). The answer is ONE ciphertext with group ``g``'s total in slot
   ``g``, at one multiplicative level (full CKKS precision), whatever the number
   of groups up to 4096. Per-group masks with a slot sum each would cost 12
   rotations and a second multiplication per group, and the second level leaves
   CKKS only 20 bits for the totals;
6. writes one ledger entry of metadata (who, dataset version, groups, list
   size, unmatched and ambiguous counts, each withheld group with its reason),
   never keys, values or ciphertexts;
7. answers with the released groups only: no unmatched count, no refused count,
   no reason. A withheld group looks exactly like a group none of the keys reached.

The platform never decrypts: it never holds the secret key. The slot layout
is the operator's list order, so the operator never has to sort by group (which
would tell it which of its subjects share a county). The platform does learn
which keys the operator sent: it must, to join them.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from jobs import get_kind
from jobs.base import one_table_scope
from jobs.he_aggregate import (
    KIND,
    SLOTS,
    HePlan,
    duplicate_count,
    pack,
)
from policies.errors import Conflict, InputError, PolicyRefusal, SandboxError
from sandbox.he.evaluate import Evaluation
from sandbox.he.groups import Groups, join_groups
from sandbox.he.upload import HeUpload, load_public_context, parse_upload
from sandbox.run.jobstate import (
    JobState,
    may_transition,
    open_job,
    refuse,
    state_of,
    transition,
)


@dataclass(frozen=True)
class HeAnswer:
    header: dict
    ciphertext: bytes | None
    timings: dict = field(default_factory=dict, compare=False)

    def to_bytes(self) -> bytes:
        return pack(self.header, [self.ciphertext] if self.ciphertext else [])


def _json_value(value):
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def he_sum(platform, operator, body: bytes, now: datetime | None = None) -> HeAnswer:
    """Run one HE aggregate request from the operator's body; see the module docstring.

    The request is a job row like any other (issue 18): ``submitted`` once its body is
    well formed, then ``refused`` by the gate, or ``queued`` and ``running`` (one
    transaction, so no executor ever finds it queued), ``checking`` and ``released``
    when the answer is made, or ``failed``; each move is a ledger entry naming the
    operator. The answer is not kept: the platform cannot read it.
    """
    settings = platform.settings
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    upload = parse_upload(body, settings.he.max_values)
    job_id = _open_job(platform, operator, upload)
    try:
        plan, version, ctx = _admit(platform, operator, upload, now or datetime.now(UTC))
    except (PolicyRefusal, InputError) as exc:
        _end_job(platform, operator, job_id, JobState.REFUSED, exc)
        raise
    except Exception as exc:
        _end_job(platform, operator, job_id, JobState.FAILED, exc)
        raise
    _start_job(platform, operator, job_id, version)
    try:
        answer = _run(platform, operator, job_id, upload, (plan, version, ctx), timings, t0)
    except Exception as exc:
        _end_job(platform, operator, job_id, JobState.FAILED, exc)
        raise
    return answer


def _run(platform, operator, job_id, upload, admitted, timings, t0) -> HeAnswer:
    """Join, difference, evaluate and record one admitted HE request (see he_sum);
    ``admitted``: the plan, the dataset version and the context as :func:`_admit` read
    them."""
    plan, version, ctx = admitted
    settings = platform.settings
    timings["check_s"] = time.perf_counter() - t0
    work = platform.work_dir()
    try:
        # the workers read and check the ciphertexts while the keys are joined
        with Evaluation(
            work,
            upload.context,
            upload.ciphertexts,
            plan.scheme,
            settings.he.processes,
            settings.job.time_limit_s,
            settings.job.memory_limit_mb,
            settings.ray.address,
            loaded=ctx,
        ) as evaluation:
            groups, bitmaps = _groups(platform, plan, version, upload, timings)
            answer, eval_timings = evaluation.run(groups.labels, len(groups.released))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings.update(eval_timings)
    with platform.store.transaction() as conn:
        if settings.differencing.enabled:
            _record_groups(conn, platform, operator, plan.dataset, groups, bitmaps)
        _record_sum(conn, platform, operator, plan, version, upload, groups)
        transition(platform, conn, job_id, operator, JobState.CHECKING, {"kind": KIND})
        transition(
            platform,
            conn,
            job_id,
            operator,
            JobState.RELEASED,
            {"kind": KIND, "groups": len(groups.released)},
        )
    timings["total_s"] = time.perf_counter() - t0
    # the answer does not name its job: two answers that hold the same groups are the
    # same bytes (the operator finds the job in its job list)
    return HeAnswer(_header(plan, version, groups), answer, timings)


def _groups(platform, plan: HePlan, version, upload: HeUpload, timings: dict):
    """The join and the differencing defence: the groups the answer holds and their
    contributors as bitmaps (none when the defence is off)."""
    settings = platform.settings
    t1 = time.perf_counter()
    differencing = settings.differencing.enabled
    numbers = _numbers(platform, plan.dataset, version) if differencing else None
    groups = join_groups(plan, version.path, upload.keys, numbers=numbers)
    bitmaps: list = []
    if differencing:
        groups, bitmaps = _difference(platform, plan.dataset, groups, settings.differencing.k)
    timings["join_s"] = time.perf_counter() - t1
    if len(groups.released) > SLOTS:
        raise InputError(f"{len(groups.released)} groups do not fit one answer of {SLOTS} slots")
    return groups, bitmaps


def _open_job(platform, operator, upload: HeUpload) -> int:
    """The job row of a well-formed request (``submitted``): what it asks, never its keys,
    values or ciphertexts."""
    request = upload.request
    asked = {
        "dataset": request.dataset,
        "key_column": request.key_column,
        "by": list(request.by),
        "scheme": request.scheme.value,
        "list_size": len(upload.keys),
    }
    return open_job(platform, operator, KIND, asked)


def _start_job(platform, operator, job_id: int, version) -> None:
    """``queued`` and ``running`` in one transaction, with the dataset version it reads."""
    inputs = [{"dataset": version.dataset, "version": version.version, "sha256": version.sha256}]
    with platform.store.transaction() as conn:
        transition(
            platform,
            conn,
            job_id,
            operator,
            JobState.QUEUED,
            {"inputs": inputs},
            "Art. 14",
            inputs_json=json.dumps(inputs),
        )
        transition(platform, conn, job_id, operator, JobState.RUNNING, {"engine": "tenseal"})


def _end_job(platform, operator, job_id: int, state: JobState, exc: Exception) -> None:
    """``refused`` (the gate said no) or ``failed``; the reason as the operator reads it."""
    if not isinstance(exc, SandboxError):
        exc = SandboxError(
            "the platform failed while answering the HE request; nothing was sent",
            code="internal_error",
            article="Art. 8",
        )
    with platform.store.transaction() as conn:
        if may_transition(state_of(conn, job_id), state):
            refuse(platform, conn, job_id, operator, exc, state)


def _admit(platform, operator, upload: HeUpload, now: datetime):
    """The grants gate, the plan and the upload's checks; a refusal is recorded in the
    ledger (``he.refused``) before it is raised. Returns the plan, the dataset version and
    the operator's public context as read."""
    from sandbox.data.grants import may_run
    from sandbox.data.places import scoped
    from sandbox.data.vault import get_version

    request = upload.request
    try:
        with platform.store.read() as conn:
            used = may_run(
                conn,
                operator,
                [request.dataset],
                KIND,
                now,
                columns={request.dataset: [request.key_column, *request.by]},
            )
            # a county agreement sums its county's rows only (Art. 5)
            version = scoped(
                conn,
                platform,
                get_version(conn, platform, request.dataset),
                used[request.dataset].agreement_id,
            )
        params = platform.disclosure_minimums().tightened(used[request.dataset].disclosure)
        scope = replace(one_table_scope(request.dataset, version.classification), disclosure=params)
        plan = get_kind(KIND).plan(request.as_mapping(), scope)
        ctx = load_public_context(upload.context, plan.scheme)
        if ctx.is_private():  # the platform never keeps a context it could decrypt with
            raise PolicyRefusal("he_secret_key_sent", "the context holds a secret key")
        duplicates = duplicate_count(upload.keys)
        if duplicates:
            raise InputError(
                f"{duplicates} key(s) of your list appear more than once; sum the values of "
                "each key before encrypting"
            )
    except PolicyRefusal as exc:
        with platform.store.transaction() as conn:
            platform.record(
                conn,
                operator.actor,
                "he.refused",
                f"dataset:{request.dataset}",
                {"rule": exc.rule, "list_size": len(upload.keys), "scheme": request.scheme.value},
                exc.article or "Art. 15",
            )
        raise
    return plan, version, ctx


def _header(plan: HePlan, version, groups: Groups) -> dict:
    """The answer's clear header: the released groups with their slots and sizes, and
    nothing else. No count of unmatched or ambiguous keys (with a list of one real key
    and padding, it would say whether that key is in the dataset), no count of refused
    or differenced groups, no list size: a group withheld for any reason is simply not
    here, exactly like a group none of the keys reached, and two lists that differ only
    in keys matching nothing get the same header. The reasons go to the ledger."""
    return {
        "scheme": plan.scheme.value,
        "dataset": plan.dataset,
        "version": version.version,
        "key_column": plan.key_column,
        "by": list(plan.by),
        "slots": SLOTS,
        "min_subjects": plan.min_subjects,
        "groups": [
            {
                "group": {c: _json_value(v) for c, v in zip(plan.by, g, strict=True)},
                "subjects": n,
                "slot": slot,
            }
            for slot, (g, n) in enumerate(groups.released)
        ],
    }


MAX_LEDGERED_GROUPS = 200  # withheld groups named one by one in a ledger entry


def _record_sum(conn, platform, operator, plan: HePlan, version, upload: HeUpload, groups: Groups):
    """The ledger entry ``he.sum``: what was read and what the answer holds (counts only)."""
    platform.record(
        conn,
        operator.actor,
        "he.sum",
        f"dataset:{plan.dataset}",
        {
            "dataset": plan.dataset,
            "version": version.version,
            "sha256": version.sha256,
            "key_column": plan.key_column,
            "by": list(plan.by),
            "scheme": plan.scheme.value,
            "list_size": len(upload.keys),
            "ciphertexts": len(upload.ciphertexts),
            "groups": len(groups.released),
            "groups_refused": groups.refused,
            "groups_differenced": groups.differenced,
            "unmatched": groups.unmatched,
            "ambiguous": groups.ambiguous,
            "min_subjects": plan.min_subjects,
            # for auditors only: which groups were withheld and why
            "withheld": [
                {"group": [_json_value(v) for v in group], "reason": reason}
                for group, reason in groups.withheld[:MAX_LEDGERED_GROUPS]
            ],
            "withheld_more": max(0, len(groups.withheld) - MAX_LEDGERED_GROUPS),
        },
        "Art. 15",
    )


def _numbers(platform, dataset: str, version):
    """The row file of the version's entity numbers (numbering it first if it is new:
    the one numbering of the lineage, the SQL jobs' too, so every entity is numbered
    once)."""
    from sandbox.guard.numbering import numbering_for

    return numbering_for(platform, dataset, version).rows


def _difference(platform, dataset: str, groups: Groups, k: int) -> tuple[Groups, list]:
    """Withhold every group whose subjects differ by fewer than ``k`` entities from a
    cell released before (by a job or an HE answer of any operator), or that earlier
    cells would single out (:mod:`policies.differencing`); checked before the
    evaluation so the answer has no slot for them. Returns the groups left and their
    contributors as bitmaps."""
    from pyroaring import BitMap

    from policies.differencing import DiffVerdict, check_cells
    from sandbox.guard.history import history_of

    history = history_of(platform)
    bitmaps = [BitMap(numbers) for numbers in groups.entities]
    with platform.store.read() as conn:
        findings = check_cells(bitmaps, history.index(conn, dataset), k)
    hit = {s for s, f in enumerate(findings) if f is not None and f.verdict is DiffVerdict.SUPPRESS}
    return groups.without(hit), [b for s, b in enumerate(bitmaps) if s not in hit]


def _record_groups(conn, platform, operator, dataset: str, groups: Groups, bitmaps) -> None:
    """Judge the answer's groups again in the transaction that records them: another
    release committed since the first look could make one of them a difference. The
    entity numbers are the version's numbering, committed before the join, so its
    bitmaps still hold."""
    from policies.differencing import DiffVerdict, check_cells
    from sandbox.core.ledger import now_utc
    from sandbox.guard.history import history_of

    history = history_of(platform)
    k = platform.settings.differencing.k
    findings = check_cells(bitmaps, history.index(conn, dataset), k)
    if any(f is not None and f.verdict is DiffVerdict.SUPPRESS for f in findings):
        raise Conflict(
            "another release of this dataset was made while your sums were computed and "
            "one of your groups now differs too little from it; send the request again "
            "(Art. 15)",
            article="Art. 15",
        )
    cells = [
        (slot, list(group), bitmap)
        for slot, ((group, _n), bitmap) in enumerate(zip(groups.released, bitmaps, strict=True))
    ]
    history.record_request(conn, dataset, "he.sum", operator.id, cells, now_utc())


def he_sum_safely(platform, operator, body: bytes) -> HeAnswer:
    """:func:`he_sum` with library errors translated (for callers outside the platform)."""
    try:
        return he_sum(platform, operator, body)
    except SandboxError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"the HE request could not be processed ({type(exc).__name__})") from exc
