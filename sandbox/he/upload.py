"""The operator's HE request as the platform reads it: the framed body (header,
public context, keys, ciphertexts), every size checked before it is used, and the
public context, refused if it holds a secret key or falls below the security floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from jobs.he_aggregate import (
    SLOTS,
    HeRequest,
    Scheme,
    check_security,
    frames_digest,
    unpack,
)
from policies.errors import InputError, PolicyRefusal

MAX_CONTEXT_BYTES = 64 << 20  # a CKKS N=8192 public context with Galois keys is ~35 MB


MAX_CIPHERTEXT_BYTES = 2 << 20  # a fresh N=8192 ciphertext is ~0.3 to 0.5 MB


MAX_KEY_LENGTH = 128


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
        request = HeRequest.from_mapping(header)
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
    if keys and (min(map(len, keys)) < 1 or max(map(len, keys)) > MAX_KEY_LENGTH):
        raise InputError(f"every key must be 1 to {MAX_KEY_LENGTH} characters long")
    expected = math.ceil(n / SLOTS)
    if len(cts) != expected:
        raise InputError(
            f"{n:,} values pack into {expected} ciphertexts of {SLOTS} slots; "
            f"the request has {len(cts)}"
        )
    return HeUpload(request, context, keys, list(cts))


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
