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
   disagree on the group (ambiguous), join no group;
4. refuses groups with fewer than ``min_entities`` subjects before anything is
   computed for them;
5. evaluates in ``he.processes`` worker processes (``python -m sandbox.he.service``,
   rlimits, no network), each owning a range of rotation amounts: a value in
   slot ``i`` of group ``g`` must move left by ``r = (i - g) mod W`` (``W``: the
   groups rounded up to a power of two), so per ciphertext and ``r`` a plaintext
   0/1 mask times the ciphertext is accumulated (the only multiplication), the
   accumulators are rotated into place by Horner's rule (one rotation by 1 per
   ``r``) and slots congruent modulo ``W`` are summed (log2(4096 / W)
   rotations). The answer is ONE ciphertext with group ``g``'s total in slot
   ``g``, at one multiplicative level (full CKKS precision), whatever the number
   of groups up to 4096. Per-group masks with a slot sum each would cost 12
   rotations and a second multiplication per group, and the second level leaves
   CKKS only 20 bits for the totals;
6. writes one ledger entry of metadata (who, dataset version, groups, list
   size, refused groups), never keys, values or ciphertexts.

The platform never decrypts: it never holds the secret key. The slot layout
is the operator's list order, so the operator never has to sort by group (which
would tell it which of its subjects share a county). The platform does learn
which keys the operator sent: it must, to join them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from jobs.he_aggregate import (
    KIND,
    GroupVerdict,
    HePlan,
    HeRequest,
    Scheme,
    check_security,
    duplicate_count,
    judge_groups,
    parse_scheme,
    plan_he,
)
from policies.errors import Conflict, InputError, JobFailed, PolicyRefusal, SandboxError

SLOTS = 4096  # values per ciphertext: CKKS N=8192 has 4096 slots; BFV uses one row of 4096
MAGIC = b"SBHE1\n"
MAX_HEADER = 1 << 16
MAX_CONTEXT_BYTES = 64 << 20  # a CKKS N=8192 public context with Galois keys is ~35 MB
MAX_CIPHERTEXT_BYTES = 2 << 20  # a fresh N=8192 ciphertext is ~0.3 to 0.5 MB
MAX_KEY_LENGTH = 128


# --------------------------------------------------------------------------- framing


def pack(header: dict, frames: Sequence[bytes]) -> bytes:
    """``MAGIC | u32 header length | header JSON | u32 frame count | (u64 length | bytes)*``."""
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    parts = [MAGIC, struct.pack(">I", len(head)), head, struct.pack(">I", len(frames))]
    for frame in frames:
        parts.append(struct.pack(">Q", len(frame)))
        parts.append(bytes(frame))
    return b"".join(parts)


def unpack(body: bytes, *, max_frames: int, max_frame: int) -> tuple[dict, list[memoryview]]:
    """Parse :func:`pack`'s format; every length is checked before it is used."""
    view = memoryview(body)

    def bad(why: str) -> InputError:
        return InputError(f"the HE request body is malformed: {why}")

    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise bad("it does not start with the HE format's magic bytes")
    at = len(MAGIC)
    if len(view) < at + 4:
        raise bad("it ends inside the header length")
    (head_len,) = struct.unpack(">I", view[at : at + 4])
    at += 4
    if head_len > MAX_HEADER or at + head_len > len(view):
        raise bad("the header length is out of range")
    try:
        header = json.loads(bytes(view[at : at + head_len]))
    except ValueError:
        raise bad("the header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    at += head_len
    if len(view) < at + 4:
        raise bad("it ends inside the frame count")
    (count,) = struct.unpack(">I", view[at : at + 4])
    at += 4
    if count > max_frames:
        raise bad(f"{count} frames, more than the {max_frames} allowed")
    frames = []
    for i in range(count):
        if len(view) < at + 8:
            raise bad(f"it ends inside the length of frame {i}")
        (size,) = struct.unpack(">Q", view[at : at + 8])
        at += 8
        if size > max_frame or at + size > len(view):
            raise bad(f"frame {i} is over its size limit or runs past the end")
        frames.append(view[at : at + size])
        at += size
    if at != len(view):
        raise bad("bytes follow the last frame")
    return header, frames


def frames_digest(frames: Sequence[bytes | memoryview]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(struct.pack(">Q", len(frame)))
        digest.update(frame)
    return digest.hexdigest()


# --------------------------------------------------------------------------- request


@dataclass(frozen=True)
class HeUpload:
    request: HeRequest
    context: memoryview = field(repr=False)
    keys: list[str] = field(repr=False)
    ciphertexts: list[memoryview] = field(repr=False)


def parse_upload(body: bytes, max_values: int) -> HeUpload:
    """The operator's request: header, public context, keys, ciphertexts (frames in order)."""
    max_cts = math.ceil(max_values / SLOTS)
    header, frames = unpack(
        body, max_frames=2 + max_cts, max_frame=max(MAX_CONTEXT_BYTES, 64 * max_values)
    )
    try:
        by = header["by"]
        request = HeRequest(
            dataset=str(header["dataset"]),
            key_column=str(header["key_column"]),
            by=tuple(str(c) for c in (by if isinstance(by, list) else [by])),
            scheme=parse_scheme(header.get("scheme", "ckks")),
        )
        n = int(header["values"])
        digest = str(header["sha256"])
    except (KeyError, TypeError, ValueError):
        raise InputError(
            "the HE request header needs dataset, key_column, by, scheme, values and sha256"
        ) from None
    if len(frames) < 2:
        raise InputError("the HE request needs a context frame and a keys frame")
    if frames_digest(frames) != digest:
        raise InputError(
            "the HE request's frames do not match their SHA-256: the body was altered or "
            "truncated on the way; send it again"
        )
    if not 1 <= n <= max_values:
        raise InputError(f"send between 1 and {max_values:,} values (setting he.max_values)")
    context, keys_frame, cts = frames[0], frames[1], frames[2:]
    if len(context) > MAX_CONTEXT_BYTES:
        raise InputError(f"the context is over {MAX_CONTEXT_BYTES >> 20} MiB")
    for i, ct in enumerate(cts):
        if len(ct) > MAX_CIPHERTEXT_BYTES:
            raise InputError(f"ciphertext {i} is over {MAX_CIPHERTEXT_BYTES >> 20} MiB")
    try:
        keys = bytes(keys_frame).decode("utf-8").split("\n") if len(keys_frame) else []
    except UnicodeDecodeError:
        raise InputError("the keys frame is not UTF-8 text") from None
    if len(keys) != n:
        raise InputError(f"the header announces {n:,} values but the list has {len(keys):,} keys")
    if any(not k or len(k) > MAX_KEY_LENGTH for k in keys):
        raise InputError(f"every key must be 1 to {MAX_KEY_LENGTH} characters long")
    expected = math.ceil(n / SLOTS)
    if len(cts) != expected:
        raise InputError(
            f"{n:,} values pack into {expected} ciphertexts of {SLOTS} slots; "
            f"the request has {len(cts)}"
        )
    return HeUpload(request, context, keys, list(cts))


# --------------------------------------------------------------------------- context


def load_public_context(data: bytes | memoryview, scheme: Scheme):
    """The operator's context, refused if it holds a secret key or is below the floor."""
    import tenseal as ts
    import tenseal.sealapi  # noqa: F401  (registers SEAL's types, such as Modulus)

    try:
        ctx = ts.context_from(bytes(data))
    except Exception as exc:  # TenSEAL raises ValueError / RuntimeError on bad bytes
        raise InputError("the HE context cannot be read: not a serialized TenSEAL context") from exc
    if ctx.is_private() or ctx.has_secret_key():
        raise PolicyRefusal(
            "he_secret_key_sent",
            "the uploaded context holds a secret key; the platform must never be able to "
            "decrypt your values",
            article="Art. 19",
            subject="context",
            hint="serialize with save_secret_key=False (the client does) and keep the key local",
        )
    parms = ctx.seal_context().data.key_context_data().parms()
    kind = str(parms.scheme()).rsplit(".", 1)[-1].lower()
    if kind != scheme.value:
        raise InputError(f"the request says {scheme.value} but the context is {kind}")
    check_security(
        scheme, parms.poly_modulus_degree(), [m.bit_count() for m in parms.coeff_modulus()]
    )
    if parms.poly_modulus_degree() != 2 * SLOTS:
        raise InputError(f"use poly_modulus_degree {2 * SLOTS}: answers pack {SLOTS} slots")
    if scheme is Scheme.CKKS and len(parms.coeff_modulus()) < 4:
        raise InputError(
            "a CKKS context needs two multiplicative levels (coeff_mod_bit_sizes "
            "[60, 40, 40, 60]): one for the group masks, one for the answer's slots"
        )
    if not ctx.has_galois_keys():
        raise InputError("the context needs Galois keys: the platform sums slots by rotation")
    return ctx


# --------------------------------------------------------------------------- join


@dataclass(frozen=True)
class Groups:
    """The join's outcome. ``labels[i]`` is the answer slot of list entry i, or -1."""

    labels: np.ndarray
    released: list[tuple[tuple, int]]  # (group values, subjects) in answer-slot order
    refused: int
    refused_entries: int
    unmatched: int
    ambiguous: int
    # The entity keys of each released group, in answer-slot order (the differencing
    # defence judges them against every earlier release of the dataset).
    entities: list[list[str]] = field(default_factory=list)
    differenced: int = 0  # groups withheld by the differencing defence

    def without(self, slots: set[int]) -> Groups:
        """These groups withheld (by the differencing defence): the other groups move up
        to fill the answer's slots and the withheld ones' entries join no group."""
        if not slots:
            return self
        keep = [s for s in range(len(self.released)) if s not in slots]
        new_slot = np.full(len(self.released) + 1, -1, dtype=np.int32)
        for new, old in enumerate(keep):
            new_slot[old] = new
        labels = np.where(self.labels >= 0, new_slot[self.labels], -1).astype(np.int32)
        dropped = int(np.count_nonzero((self.labels >= 0) & (labels < 0)))
        return replace(
            self,
            labels=labels,
            released=[self.released[s] for s in keep],
            entities=[self.entities[s] for s in keep] if self.entities else [],
            refused=self.refused + len(slots),
            refused_entries=self.refused_entries + dropped,
            differenced=self.differenced + len(slots),
        )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def join_groups(
    plan: HePlan, snapshot: Path, keys: Sequence[str], *, entities: bool = False
) -> Groups:
    """Join the operator's keys to the snapshot (DuckDB, in-process) and judge the groups.

    ``entities``: also list each released group's entity keys (for the differencing
    defence; a million keys cost about a second, so only when it is on)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as pads

    n = len(keys)
    by = [f"b{i}" for i in range(len(plan.by))]
    by_select = ", ".join(f"{_q(c)} AS {b}" for c, b in zip(plan.by, by, strict=True))
    same = " AND ".join(f"m.{b} IS NOT DISTINCT FROM g.{b}" for b in by)
    con = duckdb.connect(config={"threads": 2})
    try:
        con.register("q", pa.table({"pos": pa.array(range(n), pa.int64()), "k": keys}))
        con.register("snap", pads.dataset(str(snapshot), format="parquet"))
        con.execute("SET enable_external_access = false")
        con.execute(
            f"""CREATE TEMP TABLE d AS SELECT DISTINCT CAST({_q(plan.key_column)} AS VARCHAR) AS k,
                CAST({_q(plan.entity_key)} AS VARCHAR) AS e, {by_select}
                FROM snap WHERE {_q(plan.key_column)} IS NOT NULL"""
        )
        con.execute(
            f"""CREATE TEMP TABLE amb AS SELECT k FROM (SELECT DISTINCT k, {", ".join(by)} FROM d)
                GROUP BY k HAVING count(*) > 1"""
        )
        con.execute(
            """CREATE TEMP TABLE m AS SELECT q.pos, d.* EXCLUDE (k) FROM q JOIN d ON q.k = d.k
               WHERE d.k NOT IN (SELECT k FROM amb)"""
        )
        cols = ", ".join(by)
        con.execute(
            f"""CREATE TEMP TABLE grp AS SELECT row_number() OVER (ORDER BY {cols}) - 1 AS gid,
                {cols}, count(DISTINCT e) AS subjects FROM m GROUP BY {cols}"""
        )
        groups = con.execute(f"SELECT gid, {cols}, subjects FROM grp ORDER BY gid").fetchall()
        table = con.execute(
            f"SELECT DISTINCT m.pos, g.gid FROM m JOIN grp g ON {same}"
        ).fetchnumpy()
        members = (
            dict(
                con.execute(
                    f"SELECT g.gid, list(DISTINCT m.e) FROM m JOIN grp g ON {same} GROUP BY g.gid"
                ).fetchall()
            )
            if entities
            else {}
        )
        ambiguous = con.execute("SELECT count(*) FROM q WHERE k IN (SELECT k FROM amb)").fetchone()[
            0
        ]
    except duckdb.Error as exc:
        raise JobFailed(
            f"the join of your keys to '{plan.dataset}' failed ({type(exc).__name__})",
            code="engine_error",
        ) from exc
    finally:
        con.close()
    subjects = {tuple(row[1:-1]): int(row[-1]) for row in groups}
    gid_of = {tuple(row[1:-1]): int(row[0]) for row in groups}
    decisions = judge_groups(subjects, plan.min_subjects)
    released = [(d.group, d.subjects) for d in decisions if d.verdict is GroupVerdict.RELEASE]
    slot_of_gid = np.full(max(len(groups), 1), -1, dtype=np.int64)
    for slot, (group, _n) in enumerate(released):
        slot_of_gid[gid_of[group]] = slot
    labels = np.full(n, -1, dtype=np.int32)
    pos = np.asarray(table["pos"], dtype=np.int64)
    gid = np.asarray(table["gid"], dtype=np.int64)
    labels[pos] = slot_of_gid[gid]
    matched = int(len(pos))
    refused_entries = int(np.count_nonzero(slot_of_gid[gid] < 0))
    return Groups(
        labels=labels,
        released=released,
        refused=sum(1 for d in decisions if d.verdict is GroupVerdict.REFUSE),
        refused_entries=refused_entries,
        unmatched=n - matched - int(ambiguous),
        ambiguous=int(ambiguous),
        entities=[list(members[gid_of[group]]) for group, _n in released] if entities else [],
    )


# --------------------------------------------------------------------------- evaluation


def lane_width(n_groups: int) -> int:
    """Slots between two copies of a group's total in the answer: a power of two >= groups."""
    return 1 << max(0, (n_groups - 1).bit_length())


def evaluate_share(
    context: bytes,
    ciphertexts: Sequence[bytes],
    labels: np.ndarray,
    shifts: tuple[int, int],
    width: int,
    scheme: Scheme,
    out: Path,
) -> bool:
    """The part of the answer that comes from rotation amounts ``shifts`` = [lo, hi).

    The value in slot ``i`` of a ciphertext belongs to group ``g = labels[i]``; it
    must end in slot ``g`` of the answer. Rotating left by ``r = (i - g) mod width``
    puts it in a slot congruent to ``g`` modulo ``width``, so for each ``r`` the
    masked ciphertexts are accumulated (``A_r``: one plaintext 0/1 mask per
    ciphertext and shift, the only multiplication), the ``A_r`` are rotated into
    place by Horner's rule (one rotation by 1 per shift), and slots congruent
    modulo ``width`` are summed (log2(4096 / width) rotations). Slot ``g`` then
    holds group ``g``'s total and nothing else. Returns False if nothing was
    saved (no value of this share's shifts).
    """
    import tenseal as ts
    import tenseal.sealapi as sa

    ctx = ts.context_from(context)
    if ctx.is_private():  # checked by the caller too; the worker never trusts its input
        raise PolicyRefusal(
            "he_secret_key_sent", "the context holds a secret key", article="Art. 19"
        )
    seal = ctx.seal_context().data
    evaluator = sa.Evaluator(seal)
    galois = ctx.galois_keys().data
    ckks = scheme is Scheme.CKKS
    encoder = sa.CKKSEncoder(seal) if ckks else sa.BatchEncoder(seal)
    scale = ctx.global_scale if ckks else None
    first = seal.first_parms_id()
    plain, tmp = sa.Plaintext(), sa.Ciphertext()
    load = ts.ckks_vector_from if ckks else ts.bfv_vector_from
    rotate = evaluator.rotate_vector if ckks else evaluator.rotate_rows
    lo, hi = shifts
    positions = np.arange(SLOTS)
    accumulators: dict[int, object] = {}
    for j, blob in enumerate(ciphertexts):
        try:
            vector = load(ctx, bytes(blob))
            (ct,) = vector.ciphertext()
        except Exception as exc:
            raise InputError(
                f"ciphertext {j} cannot be read under the uploaded context (malformed)"
            ) from exc
        if ct.size() != 2 or list(ct.parms_id()) != list(first) or (ckks and ct.scale != scale):
            raise InputError(f"ciphertext {j} is not a fresh encryption under the uploaded context")
        share = labels[j * SLOTS : (j + 1) * SLOTS]
        shift = np.where(share >= 0, (positions[: len(share)] - share) % width, -1)
        for r in np.unique(shift[(shift >= lo) & (shift < hi)]).tolist():
            mask = shift == r
            if ckks:
                encoder.encode(mask.astype(np.float64).tolist(), ct.parms_id(), scale, plain)
            else:
                encoder.encode(mask.astype(np.int64).tolist(), plain)
            if r not in accumulators:
                acc = sa.Ciphertext()
                evaluator.multiply_plain(ct, plain, acc)
                accumulators[r] = acc
            else:
                evaluator.multiply_plain(ct, plain, tmp)
                evaluator.add_inplace(accumulators[r], tmp)
    if not accumulators:
        return False
    total = None
    for r in range(hi - 1, lo - 1, -1):  # Horner: total = sum of A_r rotated left by r - lo
        if total is not None:
            rotate(total, 1, galois, tmp)
            total, tmp = tmp, total
        acc = accumulators.get(r)
        if acc is None:
            continue
        if ckks:
            evaluator.rescale_to_next_inplace(acc)
        if total is None:
            total = acc
        else:
            evaluator.add_inplace(total, acc)
    if lo:
        rotate(total, lo, galois, tmp)
        total, tmp = tmp, total
    step = width
    while step < SLOTS:  # sum the slots congruent modulo width
        rotate(total, step, galois, tmp)
        evaluator.add_inplace(total, tmp)
        step *= 2
    total.save(str(out))
    return True


def _worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
    env.update(
        HOME="/nonexistent",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
    )
    return env


def evaluate(
    work: Path,
    context: bytes | memoryview,
    ciphertexts: Sequence[bytes | memoryview],
    labels: np.ndarray,
    n_groups: int,
    scheme: Scheme,
    processes: int,
    time_limit_s: float,
    memory_mb: int,
    ray_address: str = "",
) -> tuple[bytes | None, dict]:
    """Run the shares in worker processes and add their answers; returns (answer, timings).

    With ``ray_address`` (the ``ray.address`` setting) the shares are Ray tasks instead."""
    timings: dict[str, float] = {}
    if n_groups == 0:
        return None, timings
    started = time.perf_counter()
    (work / "context.bin").write_bytes(bytes(context))
    offsets = []
    with open(work / "ciphertexts.bin", "wb") as fh:
        for blob in ciphertexts:
            offsets.append((fh.tell(), len(blob)))
            fh.write(blob)
    np.save(work / "labels.npy", labels)
    width = lane_width(n_groups)
    count = max(1, min(processes, width))
    bounds = [round(width * p / count) for p in range(count + 1)]
    if ray_address:  # issue 9
        from sandbox.run.engines.ray_pool import ray_map

        blobs = [bytes(b) for b in ciphertexts]
        calls = [
            (bytes(context), blobs, labels, (bounds[p], bounds[p + 1]), width, scheme.value)
            for p in range(count)
        ]
        shares = ray_map(ray_share, calls, ray_address, what="the encrypted group sums")
        statuses = []
        for p, share in enumerate(shares):
            if share is not None:
                (work / f"share-{p}.bin").write_bytes(share)
            statuses.append({"ok": True, "saved": share is not None})
        timings["evaluate_s"] = time.perf_counter() - started
        return _add_shares(work, context, statuses, timings)
    procs = []
    for p in range(count):
        task = {
            "scheme": scheme.value,
            "offsets": offsets,
            "shifts": [bounds[p], bounds[p + 1]],
            "width": width,
            "out": f"share-{p}.bin",
            "cpu_s": int(time_limit_s) + 1,
            "memory_mb": memory_mb,
        }
        proc = subprocess.Popen(
            [sys.executable, "-s", "-m", "sandbox.he.service"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=work,
            env=_worker_env(),
            start_new_session=True,
            text=True,
        )
        proc.stdin.write(json.dumps(task) + "\n")
        proc.stdin.close()
        procs.append(proc)
    timings["prepare_s"] = time.perf_counter() - started
    deadline = time.monotonic() + time_limit_s
    statuses = []
    try:
        for proc in procs:
            try:
                out = proc.stdout.read() if proc.stdout else ""
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise JobFailed(
                    f"the encrypted sums exceeded the time limit of {time_limit_s:g} s "
                    "(setting job.time_limit_s)",
                    code="time_limit",
                ) from None
            statuses.append(_status(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for status in statuses:
        if status is None:
            raise JobFailed("an HE worker ended without an answer", code="worker_died")
        if not status.get("ok"):
            if status.get("error") == "input":
                raise InputError(status.get("message", "a ciphertext was refused"))
            raise JobFailed(
                f"an HE worker failed ({status.get('error', 'unknown')})", code="engine_error"
            )
    timings["evaluate_s"] = time.perf_counter() - started - timings["prepare_s"]
    return _add_shares(work, context, statuses, timings)


def _add_shares(
    work: Path, context: bytes | memoryview, statuses: list[dict], timings: dict
) -> tuple[bytes | None, dict]:
    """The answer: the sum of the saved shares ``work/share-<p>.bin``."""
    import tenseal as ts
    import tenseal.sealapi as sa

    ctx = ts.context_from(bytes(context))
    seal = ctx.seal_context().data
    evaluator = sa.Evaluator(seal)
    answer = None
    for p, status in enumerate(statuses):
        if not status.get("saved"):
            continue
        part = sa.Ciphertext()
        part.load(seal, str(work / f"share-{p}.bin"))
        if answer is None:
            answer = part
        else:
            evaluator.add_inplace(answer, part)
    if answer is None:
        return None, timings
    answer.save(str(work / "answer.bin"))
    return (work / "answer.bin").read_bytes(), timings


def _status(out: str) -> dict | None:
    for line in reversed((out or "").strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None


def _worker_main() -> None:
    """``python -m sandbox.he.service``: one share of the evaluation, in its own limited process."""
    from sandbox.run.worker import apply_limits, leave_network

    task = json.loads(sys.stdin.readline())
    apply_limits(task["cpu_s"], task["memory_mb"], 1024)
    leave_network()
    try:
        context = Path("context.bin").read_bytes()
        labels = np.load("labels.npy")
        with open("ciphertexts.bin", "rb") as fh:
            blobs = []
            for offset, size in task["offsets"]:
                fh.seek(offset)
                blobs.append(fh.read(size))
        saved = evaluate_share(
            context,
            blobs,
            labels,
            tuple(task["shifts"]),
            task["width"],
            Scheme(task["scheme"]),
            Path(task["out"]),
        )
        print(json.dumps({"ok": True, "saved": saved}), flush=True)
    except InputError as exc:
        print(json.dumps({"ok": False, "error": "input", "message": exc.message}), flush=True)
    except MemoryError:
        print(json.dumps({"ok": False, "error": "memory_limit"}), flush=True)
    except Exception as exc:  # the kind only: engine messages never travel back verbatim
        print(json.dumps({"ok": False, "error": type(exc).__name__}), flush=True)


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class HeAnswer:
    header: dict
    ciphertext: bytes | None
    timings: dict = field(default_factory=dict, compare=False)

    def to_bytes(self) -> bytes:
        return pack(self.header, [self.ciphertext] if self.ciphertext else [])


def _json_value(value):
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def ray_share(
    context: bytes,
    ciphertexts: list[bytes],
    labels,
    shifts: tuple[int, int],
    width: int,
    scheme_value: str,
) -> bytes | None:
    """One share as a Ray task (``ray.address`` set): :func:`evaluate_share`, returning
    the saved ciphertext's bytes (None if the share held no value) instead of a file."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "share.bin"
        saved = evaluate_share(
            context, ciphertexts, labels, shifts, width, Scheme(scheme_value), out
        )
        return out.read_bytes() if saved else None


def he_sum(platform, operator, body: bytes, now: datetime | None = None) -> HeAnswer:
    """Run one HE aggregate request from the operator's body; see the module docstring."""
    settings = platform.settings
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    upload = parse_upload(body, settings["he.max_values"])
    plan, version = _admit(platform, operator, upload, now or datetime.now(UTC))
    timings["check_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    differencing = settings["differencing.enabled"]
    groups = join_groups(plan, version.path, upload.keys, entities=differencing)
    bitmaps: list = []
    if differencing:
        groups, bitmaps = _difference(platform, plan.dataset, groups, settings["differencing.k"])
    timings["join_s"] = time.perf_counter() - t1
    if len(groups.released) > SLOTS:
        raise InputError(f"{len(groups.released)} groups do not fit one answer of {SLOTS} slots")
    work = platform.work_dir()
    try:
        answer, eval_timings = evaluate(
            work,
            upload.context,
            upload.ciphertexts,
            groups.labels,
            len(groups.released),
            plan.scheme,
            settings["he.processes"],
            settings["job.time_limit_s"],
            settings["job.memory_limit_mb"],
            settings["ray.address"],
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings.update(eval_timings)
    with platform.store.transaction() as conn:
        if differencing:
            _record_groups(conn, platform, operator, plan.dataset, groups, bitmaps)
        _record_sum(conn, platform, operator, plan, version, upload, groups)
    timings["total_s"] = time.perf_counter() - t0
    return HeAnswer(_header(plan, version, upload, groups), answer, timings)


def _admit(platform, operator, upload: HeUpload, now: datetime):
    """The grants gate, the plan and the upload's checks; a refusal is recorded in the
    ledger (``he.refused``) before it is raised. Returns the plan and the dataset version."""
    from sandbox.data.grants import may_run
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
            version = get_version(conn, platform, request.dataset)
        params = platform.disclosure_minimums().tightened(used[request.dataset].disclosure)
        plan = plan_he(request, version.classification, params)
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
    return plan, version


def _header(plan: HePlan, version, upload: HeUpload, groups: Groups) -> dict:
    """The answer's clear header: the groups released with their slots and sizes."""
    # Unmatched and ambiguous counts would give away the entries of the refused
    # groups by difference when those are fewer than the threshold: then withheld.
    small_rest = 0 < groups.refused_entries < plan.min_subjects
    return {
        "scheme": plan.scheme.value,
        "dataset": plan.dataset,
        "version": version.version,
        "key_column": plan.key_column,
        "by": list(plan.by),
        "slots": SLOTS,
        "list_size": len(upload.keys),
        "min_subjects": plan.min_subjects,
        "groups": [
            {
                "group": {c: _json_value(v) for c, v in zip(plan.by, g, strict=True)},
                "subjects": n,
                "slot": slot,
            }
            for slot, (g, n) in enumerate(groups.released)
        ],
        "groups_refused": groups.refused,
        "groups_differenced": groups.differenced,
        "unmatched": None if small_rest else groups.unmatched,
        "ambiguous": None if small_rest else groups.ambiguous,
    }


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
        },
        "Art. 15",
    )


def _difference(platform, dataset: str, groups: Groups, k: int) -> tuple[Groups, list]:
    """Withhold every group whose subjects differ by fewer than ``k`` entities from a
    cell released before (by a job or an HE answer of any operator), or that earlier
    cells would single out (:mod:`policies.differencing`); checked before the
    evaluation so the answer has no slot for them. Returns the groups left and their
    contributors as bitmaps."""
    from policies.differencing import DiffVerdict, check_cells
    from sandbox.guard.history import history_of

    history = history_of(platform)
    with platform.store.transaction() as conn:  # numbers new entity keys
        bitmaps = history.bitmaps(conn, dataset, groups.entities)
        findings = check_cells(bitmaps, history.index(conn, dataset), k)
    hit = {s for s, f in enumerate(findings) if f is not None and f.verdict is DiffVerdict.SUPPRESS}
    return groups.without(hit), [b for s, b in enumerate(bitmaps) if s not in hit]


def _record_groups(conn, platform, operator, dataset: str, groups: Groups, bitmaps) -> None:
    """Judge the answer's groups again in the transaction that records them: another
    release committed since the first look could make one of them a difference. The
    entity numbers were committed by the first look, so its bitmaps still hold."""
    from policies.differencing import DiffVerdict, check_cells
    from sandbox.core.ledger import now_utc
    from sandbox.guard.history import history_of

    history = history_of(platform)
    k = platform.settings["differencing.k"]
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


if __name__ == "__main__":
    _worker_main()
