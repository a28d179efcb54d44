"""The operator's half of a PSI match; it runs on the operator's machine.

:func:`run_psi` normalises and de-duplicates the list (the same
:func:`connectors.normalise.normalise` the platform applies to its column), opens
a session, fetches the platform's setup bundle (only when its ETag changed: the
bundle depends on the dataset version alone), encrypts the list under a key that
never leaves this process, sends it in near-equal chunks and compares the answers
with the setup. The platform never sees an item in the clear, nor learns which
or how many matched (in cardinality mode this client reports the size it learned
when it closes the session, for the ledger; the platform cannot check that figure).

It talks to the platform through a *transport* (:class:`Transport`): HTTP for
:meth:`sandbox.client.Client.psi`, in-process for the CLI on the platform's host
(:class:`sandbox.psi.service.LocalTransport`). It imports nothing of the platform's
server side.

The PSI library's C++ objects are used directly (``client.data``, ``Load``), as the
library's own Python wrapper does, so that a setup of a million items is parsed
once per part, not once per chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import private_set_intersection.python as psi_lib
from private_set_intersection.python import _openmined_psi as psi_core

from connectors.normalise import normalise_all
from jobs.psi_match import BundleKind, pack_message, plan_chunks, unpack_message, unpack_parts
from policies.errors import InputError, SandboxError
from policies.psi import parse_mode
from sandbox.client.envelope import raise_for_envelope

ProgressFn = Callable[[int, int], None]  # items sent, items in the list


class Transport(Protocol):
    def open(self, request: Mapping[str, Any]) -> dict: ...

    def setup(self, session: dict, etag: str | None) -> tuple[str, bytes | None]: ...

    def chunk(self, session: dict, body: bytes) -> bytes: ...

    def close(self, session: dict, result_size: int | None) -> None: ...


@dataclass(frozen=True)
class PsiResult:
    """What the operator learned. ``items``: the matched items in normal form (membership
    mode only); ``groups``: intersection size per group value (group cardinality)."""

    session: int
    dataset: str
    version: int
    column: str
    mode: str
    list_size: int
    count: int
    items: list[str] | None = None
    groups: dict[str, int] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def run_psi(
    transport: Transport,
    dataset: str,
    column: str,
    items: Iterable[object],
    *,
    mode: str = "cardinality",
    consent: str | None = None,
    group_by: str | None = None,
    progress: ProgressFn | None = None,
    cache: MutableMapping[tuple, tuple[str, bytes]] | None = None,
) -> PsiResult:
    """Match ``items`` against a dataset column; see the module docstring."""
    mode_ = parse_mode(mode)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    listed = normalise_all(items)
    lap("normalise")
    session = transport.open(
        {
            "dataset": dataset,
            "column": column,
            "mode": mode_.value,
            "list_size": len(listed),
            "consent": consent,
            "group_by": group_by,
        }
    )
    lap("open")
    blob = _setup_blob(transport, session, (dataset, session["version"], column, group_by), cache)
    lap("setup_fetch")
    kind, parts = unpack_parts(blob)
    loaded = [(label, psi_core.cpp_proto_server_setup.Load(data)) for label, data in parts]
    lap("setup_load")
    tally = _match(transport, session, listed, loaded, kind, mode_.reveals_items, progress)
    timings.update(tally.timings)
    clock = time.perf_counter()
    transport.close(session, None if mode_.reveals_items else tally.count)
    lap("close")
    return PsiResult(
        session=session["session"],
        dataset=dataset,
        version=session["version"],
        column=column,
        mode=mode_.value,
        list_size=len(listed),
        count=tally.count,
        items=tally.matched if mode_.reveals_items else None,
        groups=tally.groups,
        timings=timings,
        sizes={
            "setup": len(blob),
            "sent": tally.sent,
            "received": tally.received,
            "chunks": tally.chunks,
        },
    )


def _setup_blob(
    transport: Transport,
    session: dict,
    cache_key: tuple,
    cache: MutableMapping[tuple, tuple[str, bytes]] | None,
) -> bytes:
    """The server's setup for this dataset version, from the cache when the platform
    answers 'not modified' to its ETag."""
    cache = cache if cache is not None else {}
    known = cache.get(cache_key)
    etag, blob = transport.setup(session, known[0] if known else None)
    if blob is None:
        if known is None:
            raise InputError("the platform answered 'not modified' for a setup never fetched")
        return known[1]
    cache[cache_key] = (etag, blob)
    return blob


@dataclass
class _Tally:
    count: int = 0
    matched: list[str] = field(default_factory=list)
    groups: dict[str, int] | None = None
    sent: int = 0
    received: int = 0
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _match(
    transport: Transport,
    session: dict,
    listed: list[str],
    loaded: list,
    kind: BundleKind,
    reveal: bool,
    progress: ProgressFn | None,
) -> _Tally:
    """Send the list chunk by chunk and intersect each answer with the setup: a count,
    the matched items (reveal modes) or a count per group."""
    client = psi_lib.client.CreateWithNewKey(reveal)
    tally = _Tally(groups={label: 0 for label, _ in loaded} if kind is BundleKind.GROUPS else None)
    encrypt_s = exchange_s = intersect_s = 0.0
    at = 0
    plan = plan_chunks(len(listed), session["chunk_items"])
    for size in plan:
        chunk = listed[at : at + size]
        t = time.perf_counter()
        request = client.data.CreateRequest(chunk).save()
        encrypt_s += time.perf_counter() - t
        t = time.perf_counter()
        answer = transport.chunk(session, request)
        exchange_s += time.perf_counter() - t
        tally.sent += len(request)
        tally.received += len(answer)
        t = time.perf_counter()
        response = psi_core.cpp_proto_response.Load(answer)
        for label, setup in loaded:
            if tally.groups is not None:
                tally.groups[label] += client.data.GetIntersectionSize(setup, response)
            elif reveal:
                tally.matched.extend(chunk[i] for i in client.data.GetIntersection(setup, response))
            else:
                tally.count += client.data.GetIntersectionSize(setup, response)
        intersect_s += time.perf_counter() - t
        at += size
        if progress is not None:
            progress(at, len(listed))
    tally.chunks = len(plan)
    tally.timings = {
        "client_encrypt": round(encrypt_s, 4),
        "exchange": round(exchange_s, 4),
        "client_intersect": round(intersect_s, 4),
    }
    if tally.groups is not None:
        tally.count = sum(tally.groups.values())
    elif reveal:
        tally.matched = sorted(set(tally.matched))
        tally.count = len(tally.matched)
    return tally


class HttpTransport:
    """The platform over HTTP, through a :class:`sandbox.client.Client` (its error mapping)."""

    # Opening a session may build the setup of a new dataset version (a minute for a
    # million items); the setup of a large set is tens of megabytes.
    SLOW_S = 900.0

    def __init__(self, client):
        self.client = client

    def open(self, request: Mapping[str, Any]) -> dict:
        return self.client._call(
            "POST", "/v1/psi/sessions", json=dict(request), timeout=self.SLOW_S
        ).json()

    def setup(self, session: dict, etag: str | None) -> tuple[str, bytes | None]:
        headers = {"If-None-Match": etag} if etag else {}
        path = f"/v1/psi/sessions/{session['session']}/setup"
        try:
            response = self.client._http.get(path, headers=headers, timeout=self.SLOW_S)
        except httpx.HTTPError as exc:  # as Client._call words it (a 304 is no error there)
            raise SandboxError(
                f"cannot reach the platform: {type(exc).__name__}", code="unreachable"
            ) from exc
        if response.status_code == 304:
            return etag or "", None
        raise_for_envelope(response)
        return response.headers.get("etag", ""), response.content

    def chunk(self, session: dict, body: bytes) -> bytes:
        return self.client._call(
            "POST",
            f"/v1/psi/sessions/{session['session']}/chunks",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self.SLOW_S,
        ).content

    def close(self, session: dict, result_size: int | None) -> None:
        self.client._call(
            "POST",
            f"/v1/psi/sessions/{session['session']}/close",
            json={"result_size": result_size},
        )

    def count_open(self, body: bytes) -> bytes:
        return self.client._call(
            "POST",
            "/v1/psi/count-sessions",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self.SLOW_S,
        ).content

    def count_respond(self, session: int, body: bytes, part: int = 0) -> dict:
        return self.client._call(
            "POST",
            f"/v1/psi/count-sessions/{session}/response",
            params={"part": part},
            content=body,
            headers={"Content-Type": "application/octet-stream"},
            timeout=self.SLOW_S,
        ).json()


# --- count sessions: the roles swapped (docs/psi.md, "Counts about persons") ---------------


class CountTransport(Protocol):
    def count_open(self, body: bytes) -> bytes: ...

    def count_respond(self, session: int, body: bytes, part: int) -> dict: ...


@dataclass(frozen=True)
class PsiCount:
    """A noisy count released by the platform: ``count`` (the sum of ``groups`` when
    grouped), ``groups`` (every declared group of ``group_by``), and ``noise``: the
    mechanism, epsilon, ``scale`` and ``half_width_95`` (the true count lies within
    count +- half_width_95 with probability at least 0.95, before a count is floored at 0)."""

    session: int
    job: int
    dataset: str
    version: int
    column: str
    group_by: str | None
    list_size: int
    count: int
    groups: dict[str, int] | None
    noise: dict[str, Any]
    budget: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def run_psi_count(
    transport: CountTransport,
    dataset: str,
    column: str,
    items: Iterable[object],
    *,
    group_by: str | None = None,
) -> PsiCount:
    """Count, with noise, how many of ``items`` are in a dataset column (per declared group
    of ``group_by``), the operator being the PSI *server*: its items are encrypted under a
    key that never leaves this process, and what the platform learns is the size of the
    intersection, never which items; the operator learns only the noisy count.

    Round 1 sends the setup (the list, encrypted, RAW form) and gets the platform's
    request (its column encrypted under a key of this session); round 2 answers it, in
    parts of at most ``part_items`` elements (the last part's answer is the count)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    listed = normalise_all(items)
    server = psi_lib.server.CreateWithNewKey(False)
    setup = server.CreateSetupMessage(
        1e-9, max(1, len(listed)), listed, psi_lib.DataStructure.RAW
    ).SerializeToString()
    timings["setup"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    header = {"dataset": dataset, "column": column, "group_by": group_by}
    opened, request = unpack_message(transport.count_open(pack_message(header, setup)))
    timings["round1"] = round(time.perf_counter() - t, 4)
    # The platform asks for positions only when it counts per group; this server holds
    # the same key whichever the library's reveal switch says.
    reveal = bool(opened["reveal"])
    if reveal != (group_by is not None):
        raise InputError("the platform's request does not fit the count asked for")
    answer, sizes, process_s, exchange_s = _answer_in_parts(
        transport, server.GetPrivateKeyBytes(), reveal, opened, request
    )
    timings["process"] = round(process_s, 4)
    timings["round2"] = round(exchange_s, 4)
    return PsiCount(
        session=answer["session"],
        job=answer["job"],
        dataset=answer["dataset"],
        version=answer["version"],
        column=answer["column"],
        group_by=answer["group_by"],
        list_size=answer["list_size"],
        count=answer["count"],
        groups=answer["groups"],
        noise=answer["noise"],
        budget=answer["budget"],
        timings=timings,
        sizes={"setup": len(setup), "request": len(request), **sizes},
    )


def _answer_in_parts(
    transport: CountTransport, key: bytes, reveal: bool, opened: dict, request: bytes
) -> tuple[dict[str, Any], dict[str, int], float, float]:
    """Round 2: the platform's request answered in parts of at most ``part_items``, each
    body under the API's limit; the last part's answer holds the count. Returns that
    answer, the sizes sent, and the seconds spent processing and exchanging."""
    responder = psi_lib.server.CreateFromKey(key, reveal)
    asked = psi_lib.Request()
    asked.ParseFromString(request)
    elements = asked.encrypted_elements
    step = max(1, int(opened["part_items"]))
    starts = list(range(0, len(elements), step)) or [0]
    answer: dict[str, Any] = {}
    sent = 0
    process_s = exchange_s = 0.0
    for part, at in enumerate(starts):
        t = time.perf_counter()
        piece = psi_lib.Request()
        piece.reveal_intersection = asked.reveal_intersection
        piece.encrypted_elements.extend(elements[at : at + step])
        try:
            loaded = psi_core.cpp_proto_request.Load(piece.SerializeToString())
            response = responder.data.ProcessRequest(loaded).save()
        except RuntimeError as exc:
            raise InputError(
                f"the platform's request was refused by the PSI library: {exc}"
            ) from exc
        process_s += time.perf_counter() - t
        t = time.perf_counter()
        answer = transport.count_respond(opened["session"], response, part)
        exchange_s += time.perf_counter() - t
        sent += len(response)
    return answer, {"response": sent, "parts": len(starts)}, process_s, exchange_s


def psi_count(
    client, dataset: str, column: str, items: Iterable[object], *, group_by: str | None = None
) -> PsiCount:
    """:func:`run_psi_count` over HTTP through a :class:`sandbox.client.Client`."""
    return run_psi_count(HttpTransport(client), dataset, column, items, group_by=group_by)
