"""HE aggregate jobs, the operator's half: keys stay here, only ciphertexts leave.

The operator makes a TenSEAL context (:func:`make_context`: CKKS for decimals,
BFV for integers; ring degree 8192, at least 128-bit security), encrypts its
values packed 4096 to a ciphertext in the order of its key list
(:func:`build_request`), and sends the PUBLIC context: without the secret key,
without relinearisation keys (nothing is multiplied by a ciphertext), with the
Galois keys (the platform sums slots by rotation). It decrypts the one answer
ciphertext with :func:`decrypt_answer`: group ``i``'s total is in slot ``i``.

Nothing here talks to the platform: the HTTP client (``Client.he_sum``) and the
CLI (``sandbox he sum``) carry the bytes.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.he_aggregate import (
    MAGIC,
    SLOTS,
    HeRequest,
    Scheme,
    duplicate_count,
    frames_digest,
    pack,
    parse_scheme,
    unpack,
)
from policies.errors import InputError

CKKS_DEGREE = 8192
CKKS_COEFF_BITS = (60, 40, 40, 60)
CKKS_SCALE = 2**40
BFV_DEGREE = 8192
BFV_PLAIN_MODULUS = 2199023190017  # a 41-bit prime = 1 mod 16384 (batching)


def make_context(scheme: Scheme | str = Scheme.CKKS):
    """A private TenSEAL context with Galois keys; the secret key never leaves this process."""
    import tenseal as ts

    scheme = parse_scheme(scheme)
    if scheme is Scheme.CKKS:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS, CKKS_DEGREE, coeff_mod_bit_sizes=list(CKKS_COEFF_BITS)
        )
        ctx.global_scale = CKKS_SCALE
    else:
        ctx = ts.context(ts.SCHEME_TYPE.BFV, BFV_DEGREE, plain_modulus=BFV_PLAIN_MODULUS)
    ctx.generate_galois_keys()
    return ctx


def public_context(ctx) -> bytes:
    """The context as the platform may see it: no secret key, no relinearisation keys."""
    return ctx.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=True, save_relin_keys=False
    )


def _check_values(values: Sequence, scheme: Scheme) -> list:
    if scheme is Scheme.BFV:
        out = []
        for v in values:
            if isinstance(v, float) and not v.is_integer():
                raise InputError("BFV sums integers; use --scheme ckks for decimals")
            out.append(int(v))
        if sum(abs(v) for v in out) >= BFV_PLAIN_MODULUS // 2:
            raise InputError("the BFV values are too large: their sum would wrap around")
        return out
    try:
        floats = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("values must be numbers") from None
    if floats.ndim != 1 or not np.isfinite(floats).all():
        raise InputError("values must be finite numbers")
    return floats.tolist()


def encrypt_values(ctx, values: Sequence, scheme: Scheme) -> list[bytes]:
    """Encrypt ``values`` in list order, ``SLOTS`` to a ciphertext (the last one padded by zeros)."""
    import tenseal as ts

    make = ts.ckks_vector if scheme is Scheme.CKKS else ts.bfv_vector
    return [
        make(ctx, list(values[i : i + SLOTS])).serialize() for i in range(0, len(values), SLOTS)
    ]


def build_request(
    ctx,
    dataset: str,
    key_column: str,
    by: Sequence[str],
    keys: Sequence[str],
    values: Sequence,
    scheme: Scheme | str = Scheme.CKKS,
) -> bytes:
    """The request body: header, public context, keys (one per line), ciphertexts."""
    scheme = parse_scheme(scheme)
    keys = list(map(str, keys))
    if len(keys) != len(values):
        raise InputError(f"{len(keys)} keys but {len(values)} values: give one value per key")
    if not keys:
        raise InputError("the list of keys is empty")
    text = "\n".join(keys)
    if min(map(len, keys)) == 0 or text.count("\n") != len(keys) - 1:
        raise InputError("keys must be non-empty and must not contain line breaks")
    duplicates = duplicate_count(keys)
    if duplicates:
        raise InputError(
            f"{duplicates} key(s) appear more than once; sum the values of each key first"
        )
    values = _check_values(values, scheme)
    frames = [public_context(ctx), text.encode("utf-8")]
    frames += encrypt_values(ctx, values, scheme)
    request = HeRequest(dataset, key_column, tuple(by), scheme)
    header = {
        "dataset": request.dataset,
        "key_column": request.key_column,
        "by": list(request.by),
        "scheme": scheme.value,
        "values": len(keys),
        "sha256": frames_digest(frames),
    }
    return pack(header, frames)


@dataclass(frozen=True)
class HeGroup:
    group: dict  # column -> value
    subjects: int
    sum: float | int

    @property
    def mean(self) -> float:
        return self.sum / self.subjects


@dataclass(frozen=True)
class HeResult:
    scheme: str
    dataset: str
    version: int
    by: list[str]
    # The released groups only: a group withheld (too few subjects, or too close to an
    # earlier release) is not here, like a group none of the keys reached; the answer
    # says nothing of how many keys matched nothing (docs/he.md).
    groups: list[HeGroup]
    answer_bytes: int


def decrypt_answer(ctx, body: bytes) -> HeResult:
    """Decrypt the platform's answer with the private context that made the request."""
    import tenseal.sealapi as sa

    if not bytes(body[: len(MAGIC)]) == MAGIC:
        raise InputError("the answer is not in the HE format")
    header, frames = unpack(body, max_frames=1, max_frame=64 << 20)
    scheme = parse_scheme(header["scheme"])
    totals: list = []
    if frames:
        seal = ctx.seal_context().data
        with tempfile.TemporaryDirectory(prefix="he-answer-") as tmp:
            path = Path(tmp) / "answer.bin"
            path.write_bytes(bytes(frames[0]))
            ct = sa.Ciphertext()
            ct.load(seal, str(path))
        plain = sa.Plaintext()
        sa.Decryptor(seal, ctx.secret_key().data).decrypt(ct, plain)
        if scheme is Scheme.CKKS:
            totals = sa.CKKSEncoder(seal).decode_double(plain)
        else:
            totals = sa.BatchEncoder(seal).decode_int64(plain)
    groups = [
        HeGroup(g["group"], int(g["subjects"]), totals[int(g["slot"])]) for g in header["groups"]
    ]
    return HeResult(
        scheme=scheme.value,
        dataset=header["dataset"],
        version=int(header["version"]),
        by=list(header["by"]),
        groups=groups,
        answer_bytes=len(body),
    )


def read_keys_and_values(path: Path | str, scheme: Scheme | str = Scheme.CKKS):
    """A CSV with a header row: the first column is the key, the second the value."""
    scheme = parse_scheme(scheme)
    keys, values = [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if header is None or len(header) < 2:
                raise InputError(f"'{path}': expected a header row 'key,value'")
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) < 2:
                    raise InputError(f"'{path}' line {line}: expected a key and a value")
                keys.append(row[0].strip())
                try:
                    number = int(row[1]) if scheme is Scheme.BFV else float(row[1])
                except ValueError:
                    raise InputError(
                        f"'{path}' line {line}: the value is not a "
                        + ("whole number" if scheme is Scheme.BFV else "number")
                    ) from None
                values.append(number)
    except OSError as exc:
        raise InputError(f"'{path}' cannot be read: {exc.strerror}") from None
    return keys, values
