"""The work of one build process: encrypt one shard of the platform's set.

Kept apart from :mod:`sandbox.psi.service` so that a spawned build process imports only
the PSI library, not the platform (store, web framework). Every shard is
encrypted under the same key, so the shards' RAW encrypted elements together
are exactly the set one process would have built; a GCS or Bloom-filter shard
stays a part of its own (the client checks each part).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import private_set_intersection.python as psi

STRUCTURES = {
    "raw": psi.DataStructure.RAW,
    "gcs": psi.DataStructure.GCS,
    "bloom": psi.DataStructure.BLOOM_FILTER,
}


# This build process's server object (:func:`start_build`): made once per process, not
# once per task (making one costs as much as encrypting 20 items), and gone with the
# process when the build ends.
_BUILD: dict[str, Any] = {}


def start_build(key: bytes) -> None:
    """The initializer of a build process: a session of its own, and the server object
    of the column's key.

    A session of its own, as the job workers have: Linux's scheduler shares the CPU
    between sessions (autogroups) before it shares it between their processes, so build
    processes left in the server's session split one session's share between them. On
    a busy host two of them got one core's worth (issue 23); each in its own session,
    they get what as many processes get. The pool still ends them with the build."""
    with contextlib.suppress(OSError):
        os.setsid()
    _BUILD["server"] = psi.server.CreateFromKey(key, False)


def ready() -> None:
    """Nothing: submitted once per build process so that it starts (and imports the PSI
    library) while the platform is still reading its column."""


def encrypt_items(fpr: float, capacity: int, structure: str, items: list[str]) -> bytes:
    """:func:`encrypt_shard` in a build process, under its key (:func:`start_build`)."""
    setup = _BUILD["server"].data.CreateSetupMessage(
        fpr, capacity, items, STRUCTURES[structure].value
    )
    return setup.save()


def encrypt_shard(key: bytes, fpr: float, capacity: int, structure: str, items: list[str]) -> bytes:
    """The serialised ServerSetup of ``items`` under ``key``: the library's own bytes
    (its Python wrapper would parse them into a message only for us to serialise it)."""
    server = psi.server.CreateFromKey(key, False)
    setup = server.data.CreateSetupMessage(fpr, capacity, items, STRUCTURES[structure].value)
    return setup.save()


def merge_raw_messages(parts: list[bytes]) -> bytes:
    """One RAW ServerSetup holding the encrypted elements of every RAW part, sorted
    (the order the library itself gives, so nothing about the shards shows), through
    the protobuf messages: the general path of :func:`sandbox.psi.build.merge_raw`."""
    elements: list[bytes] = []
    for blob in parts:
        setup = psi.ServerSetup()
        setup.ParseFromString(blob)
        elements.extend(setup.raw.encrypted_elements)
    elements.sort()
    merged = psi.ServerSetup()
    merged.raw.encrypted_elements.extend(elements)
    return merged.SerializeToString()


def encrypt_request_shard(key: bytes, reveal: bool, items: list[str]) -> bytes:
    """The encrypted elements of ``items`` under a count session's client key, in order
    (a serialised Request; the shards' elements together are the whole request)."""
    client = psi.client.CreateFromKey(key, reveal)
    return client.data.CreateRequest(items).save()
