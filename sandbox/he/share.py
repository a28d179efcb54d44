"""One share of the encrypted evaluation: the SEAL arithmetic that sums an operator's
ciphertexts into one answer with group g's total in slot g (the layout is explained in
:mod:`sandbox.he.service`), for the rotation amounts a worker owns.

Two CKKS ciphertexts ride one mask. A mask multiplication is the costly step
(encoding the 0/1 mask, about three quarters of it, then the product), and there is one
per ciphertext and rotation amount. CKKS slots are complex and the operator's values
real, so the platform lays two of its ciphertexts over each other before masking:
``z = a + iota * b`` puts ``b`` in the imaginary parts (``iota``, the plaintext whose
slots are ``+-i``, is the monomial ``X^(N/2)``: multiplying by it is exact and adds no
noise). The pair's mask holds ``(m_a + conj(iota) m_b) / 2``, whose product with ``z``
has real part ``(m_a a + m_b b) / 2``; the share ends with ``total + conj(total)``,
twice the real part, so the answer holds the group totals and its imaginary parts are
zero. The rotations, the multiplicative level and the answer's size are as before;
half the masks are encoded and multiplied.

What reaches a group's total is still a sum of the operator's own numbers over the
slots whose key joined that group: a value an operator hides in the imaginary part of
a slot lands in the group of the partner ciphertext's key in that slot, which choosing
the real value of that slot tells it anyway. A context without the conjugation key
(Galois element ``2N - 1``), or whose ``X^(N/2)`` does not encode exactly, is summed
one ciphertext per mask, as is BFV: TenSEAL fills both rows of a BFV vector, so a
second row is not free, and clearing it would take a second plaintext multiplication
out of a noise budget of about 125 bits (a mask costs about 45).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.he_aggregate import SLOTS, Scheme
from policies.errors import InputError, PolicyRefusal


def lane_width(n_groups: int) -> int:
    """Slots between two copies of a group's total in the answer: a power of two >= groups."""
    return 1 << max(0, (n_groups - 1).bit_length())


def evaluate_share(
    context: bytes,
    ciphertexts: Iterable[bytes],
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
    masked ciphertexts are accumulated (``A_r``: one plaintext mask per pair of
    ciphertexts and shift, the only multiplication), the ``A_r`` are rotated into
    place by Horner's rule (one rotation by 1 per shift), and slots congruent
    modulo ``width`` are summed (log2(4096 / width) rotations). Slot ``g`` then
    holds group ``g``'s total and nothing else. Returns False if nothing was
    saved (no value of this share's shifts).
    """
    return Loaded.of(context, ciphertexts, scheme).share(labels, shifts, width, out)


@dataclass
class Loaded:
    """The operator's ciphertexts read and checked under its context, paired (CKKS) into
    the ciphertexts the masks multiply: all of it before the labels are known, so a
    worker does it while the platform joins the keys."""

    kit: Kit
    masked: list  # (first ciphertext's index, z, whether z holds a second ciphertext)

    @classmethod
    def of(cls, context: bytes, ciphertexts: Iterable[bytes], scheme: Scheme) -> Loaded:
        kit = Kit.of(context, scheme)
        masked: list = []
        held: tuple | None = None  # an even-numbered ciphertext waiting for its partner
        for j, blob in enumerate(ciphertexts):
            ct = kit.load(j, blob)
            if not kit.paired:
                masked.append((j, ct, False))
            elif held is None:
                held = (j, ct)
            else:
                masked.append((held[0], kit.pair(held[1], ct), True))
                held = None
        if held is not None:
            masked.append((held[0], held[1], False))
        return cls(kit, masked)

    def share(
        self,
        labels: np.ndarray,
        shifts: tuple[int, int],
        width: int,
        out: Path,
        timings: dict[str, float] | None = None,
    ) -> bool:
        """:func:`evaluate_share` on the loaded ciphertexts; False if nothing was saved.
        ``timings`` gets the seconds spent on the masks and on the rotations."""
        timings = {} if timings is None else timings
        started = time.perf_counter()
        accumulators = _accumulate(self.kit, self.masked, labels, shifts, width)
        timings["masks_s"] = time.perf_counter() - started
        if not accumulators:
            return False
        started = time.perf_counter()
        total = _fold(self.kit, accumulators, shifts, width)
        self.kit.finish(total)
        total.save(str(out))
        timings["fold_s"] = time.perf_counter() - started
        return True


@dataclass
class Kit:
    """What one share's evaluation works with: the operator's public context and the
    SEAL objects made from it once."""

    ctx: Any
    evaluator: Any
    galois: Any
    encoder: Any
    ckks: bool
    scale: float | None
    first: Any
    iota: Any  # the plaintext X^(N/2) (slots +-i), when two ciphertexts share a mask
    paired: bool  # CKKS with the conjugation key: two ciphertexts per mask

    @classmethod
    def of(cls, context: bytes, scheme: Scheme) -> Kit:
        import tenseal as ts
        import tenseal.sealapi as sa

        ctx = ts.context_from(context)
        if ctx.is_private():  # checked by the caller too; the worker never trusts its input
            raise PolicyRefusal(
                "he_secret_key_sent", "the context holds a secret key", article="Art. 19"
            )
        seal = ctx.seal_context().data
        ckks = scheme is Scheme.CKKS
        galois = ctx.galois_keys().data
        kit = cls(
            ctx=ctx,
            evaluator=sa.Evaluator(seal),
            galois=galois,
            encoder=sa.CKKSEncoder(seal) if ckks else sa.BatchEncoder(seal),
            ckks=ckks,
            scale=ctx.global_scale if ckks else None,
            first=seal.first_parms_id(),
            iota=None,
            paired=False,
        )
        if ckks and galois.has_key(4 * SLOTS - 1):  # the conjugation's Galois element
            kit.iota = kit.monomial()
            kit.paired = kit.iota is not None
        return kit

    def monomial(self):
        """The plaintext ``X^(N/2)``: slot ``i`` holds ``i`` times ``(-1)^i``. Encoded at
        scale 1 it must come back exactly (the coefficients rounded to the monomial),
        else None (the ciphertexts are then masked one at a time)."""
        import tenseal.sealapi as sa

        iota = _iota()
        plain = sa.Plaintext()
        self.encoder.encode(iota.tolist(), self.first, 1.0, plain)
        back = np.asarray(self.encoder.decode_complex(plain))
        return plain if float(np.max(np.abs(back - iota))) < 1e-6 else None

    def rotate(self, ct, steps: int, out) -> None:
        if self.ckks:
            self.evaluator.rotate_vector(ct, steps, self.galois, out)
        else:
            self.evaluator.rotate_rows(ct, steps, self.galois, out)

    def pair(self, a, b):
        """``a`` and ``b`` in one ciphertext, ``b`` in the imaginary parts."""
        import tenseal.sealapi as sa

        z = sa.Ciphertext()
        self.evaluator.multiply_plain(b, self.iota, z)
        self.evaluator.add_inplace(z, a)
        return z

    def finish(self, total) -> None:
        """Twice the real part, ``total + conj(total)``, when ciphertexts were paired."""
        import tenseal.sealapi as sa

        if self.paired:
            other = sa.Ciphertext()
            self.evaluator.complex_conjugate(total, self.galois, other)
            self.evaluator.add_inplace(total, other)

    def load(self, j: int, blob: bytes):
        """Ciphertext ``j``, refused unless it is a fresh encryption under the context."""
        import tenseal as ts

        load = ts.ckks_vector_from if self.ckks else ts.bfv_vector_from
        try:
            (ct,) = load(self.ctx, bytes(blob)).ciphertext()
        except Exception as exc:
            raise InputError(
                f"ciphertext {j} cannot be read under the uploaded context (malformed)"
            ) from exc
        stale = ct.size() != 2 or list(ct.parms_id()) != list(self.first)
        if stale or (self.ckks and ct.scale != self.scale):
            raise InputError(f"ciphertext {j} is not a fresh encryption under the uploaded context")
        return ct

    def encode(self, row: list, plain) -> None:
        if self.ckks:
            self.encoder.encode(row, self.first, self.scale, plain)
        else:
            self.encoder.encode(row, plain)


def _iota() -> np.ndarray:
    """The slots of ``X^(N/2)`` in SEAL's CKKS slot order (generator 3): ``i * (-1)^k``."""
    return 1j * np.where(np.arange(SLOTS) % 2 == 0, 1.0, -1.0)


class _Masks:
    """The mask rows of a pair of ciphertexts, one per rotation amount, as the lists the
    encoder reads: built by copying a row of zeros and setting the few slots of that
    amount (about SLOTS / width per ciphertext), not by converting 4096 numbers each."""

    def __init__(self, kit: Kit) -> None:
        self.zero: list = [0j] * SLOTS if kit.ckks else [0] * SLOTS
        self.one: Any = (0.5 + 0j) if kit.paired else (1.0 + 0j) if kit.ckks else 1
        # the second ciphertext's slots carry conj(iota) / 2: -i/2, +i/2, ...
        self.second: list = (0.5 * np.conj(_iota())).tolist()

    def row(self, in_a: list[int], in_b: list[int]) -> list:
        row = self.zero.copy()
        one = self.one
        for i in in_a:
            row[i] = one
        second = self.second
        for i in in_b:
            row[i] = row[i] + second[i]
        return row


def _by_shift(labels: np.ndarray, j: int, shifts: tuple[int, int], width: int) -> list[list[int]]:
    """For ciphertext ``j``: the slots that must move left by each r in [lo, hi)."""
    lo, hi = shifts
    share = labels[j * SLOTS : (j + 1) * SLOTS]
    shift = np.where(share >= 0, (np.arange(len(share)) - share) % width, -1)
    slots = np.flatnonzero((shift >= lo) & (shift < hi))
    amounts = shift[slots]
    order = np.argsort(amounts, kind="stable")
    slots, amounts = slots[order], amounts[order]
    cuts = np.searchsorted(amounts, np.arange(lo, hi + 1)).tolist()
    return [slots[cuts[k] : cuts[k + 1]].tolist() for k in range(hi - lo)]


def _accumulate(
    kit: Kit, masked: list, labels: np.ndarray, shifts: tuple[int, int], width: int
) -> dict[int, Any]:
    """``A_r`` for each rotation amount r of this share: the sum over the (paired)
    ciphertexts of each times its mask of the slots that must move left by r."""
    import tenseal.sealapi as sa

    plain, tmp = sa.Plaintext(), sa.Ciphertext()
    lo, hi = shifts
    masks = _Masks(kit)
    none: list[list[int]] = [[] for _ in range(hi - lo)]
    accumulators: dict[int, Any] = {}
    for j, z, paired in masked:
        in_a = _by_shift(labels, j, shifts, width)
        in_b = _by_shift(labels, j + 1, shifts, width) if paired else none
        for k, r in enumerate(range(lo, hi)):
            if not in_a[k] and not in_b[k]:
                continue
            kit.encode(masks.row(in_a[k], in_b[k]), plain)
            if r not in accumulators:
                acc = sa.Ciphertext()
                kit.evaluator.multiply_plain(z, plain, acc)
                accumulators[r] = acc
            else:
                kit.evaluator.multiply_plain(z, plain, tmp)
                kit.evaluator.add_inplace(accumulators[r], tmp)
    return accumulators


def _fold(kit: Kit, accumulators: dict[int, Any], shifts: tuple[int, int], width: int):
    """Rotate the ``A_r`` into place by Horner's rule, then sum the slots congruent
    modulo ``width``: slot g holds group g's total."""
    import tenseal.sealapi as sa

    tmp = sa.Ciphertext()
    lo, hi = shifts
    total = None
    for r in range(hi - 1, lo - 1, -1):  # Horner: total = sum of A_r rotated left by r - lo
        if total is not None:
            kit.rotate(total, 1, tmp)
            total, tmp = tmp, total
        acc = accumulators.get(r)
        if acc is None:
            continue
        if kit.ckks:
            kit.evaluator.rescale_to_next_inplace(acc)
        if total is None:
            total = acc
        else:
            kit.evaluator.add_inplace(total, acc)
    if lo:
        kit.rotate(total, lo, tmp)
        total, tmp = tmp, total
    step = width
    while step < SLOTS:  # sum the slots congruent modulo width
        kit.rotate(total, step, tmp)
        kit.evaluator.add_inplace(total, tmp)
        step *= 2
    return total
