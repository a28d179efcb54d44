"""The Python client of the HTTP API: ``Client(base_url, token)``.

One method per route, with typed keyword parameters (a workflow body is built with the
API's own model of it, :mod:`sandbox.api.workflow_models`, and refused here as the API would
refuse it), typed results (the API's own pydantic models of :mod:`sandbox.api.models`, so
server and client share one schema, and :mod:`sandbox.client.results` for the answers the
API does not model), and errors raised as the platform's own exception tree: the envelope's ``code`` picks the class
(:data:`sandbox.core.codes.CODES`), so ``except NotFound`` works the same over
HTTP as in-process. Each raised error also carries ``status`` and
``request_id``. ``hooks`` are called with every :class:`httpx.Response`
(tests collect the error responses they saw with one)::

    from sandbox.client import Client
    with Client("http://127.0.0.1:8040", token) as api:
        job = api.submit_job("SELECT county, COUNT(*) AS n FROM persons GROUP BY county")
        job = api.wait_job(job.job)
        api.download_zip(job.product, "out/")
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from policies.errors import SandboxError
from sandbox.api.models import (
    DatasetDetail,
    DatasetSummary,
    GrantSummary,
    Job,
    JobSummary,
    Me,
    PrincipalStatus,
    Registration,
    RotatedToken,
)
from sandbox.client.envelope import raise_for_envelope
from sandbox.client.models import ModelCalls
from sandbox.client.products import ProductCalls, ProductHandle
from sandbox.client.retry import RetryPolicy, send
from sandbox.client.sources import SourceCalls
from sandbox.client.supervision import SupervisionCalls
from sandbox.client.verify import VerifyAnswer, VerifyCalls
from sandbox.client.workflow import WorkflowCalls

if TYPE_CHECKING:
    from sandbox.client.he import HeResult
    from sandbox.client.psi import PsiResult

LONG_POLL_S = 25.0
DEFAULT_RETRY = RetryPolicy()  # 4 tries, waits of at most 30 s


M = TypeVar("M", bound=BaseModel)


def _build(cls: type[M], data: dict[str, Any]) -> M:
    """A result from a response's JSON, validated by the API's own model of it."""
    return cls.model_validate(data)


__all__ = ["Client", "ProductHandle", "RetryPolicy", "VerifyAnswer", "dumps"]


class Client(ProductCalls, SourceCalls, WorkflowCalls, SupervisionCalls, VerifyCalls, ModelCalls):
    """A thin, typed wrapper over the routes; thread-safe like :class:`httpx.Client`.

    A 429 (over ``api.rate_per_minute``) or a 503 (not ready) is sent again after the
    answer's ``Retry-After`` or a backoff (:class:`sandbox.client.retry.RetryPolicy`;
    ``retry=None`` raises the first one).

    Example: ``with Client("http://127.0.0.1:8040", token) as api: print(api.me().role)``
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        hooks: Iterable[Callable[[httpx.Response], None]] = (),
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ):
        self.retry = retry
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            event_hooks={"response": [self._read_then(h) for h in hooks]},
        )

    @staticmethod
    def _read_then(hook: Callable[[httpx.Response], None]) -> Callable[[httpx.Response], None]:
        def call(response: httpx.Response) -> None:
            response.read()
            hook(response)

        return call

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (``with Client(...)`` does it on leaving).

        Example: ``api.close()``
        """
        self._http.close()

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        # a retried upload sends its files whole: httpx seeks each file to its start
        if method == "POST":  # one key for the call and all its retries: it acts once
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
            kwargs["headers"] = headers
        try:
            response = send(lambda: self._http.request(method, path, **kwargs), self.retry)
        except httpx.HTTPError as exc:
            raise SandboxError(
                f"cannot reach the platform at {self._http.base_url}: {type(exc).__name__}",
                code="unreachable",
            ) from exc
        raise_for_envelope(response)
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        return self._call(method, path, **kwargs).json()

    # --- system ---------------------------------------------------------------

    def health(self) -> str:
        """Liveness: ``"ok"`` while the process is up (no token needed).

        Example: ``api.health()``
        """
        return self._json("GET", "/healthz")["status"]

    def ready(self) -> str:
        """Readiness: ``"ready"`` when the store, the signing key and the executor work.

        Example: ``api.ready()``
        """
        return self._json("GET", "/readyz")["status"]

    def me(self) -> Me:
        """The principal this client's token belongs to.

        Example: ``api.me().role``
        """
        return _build(Me, self._json("GET", "/v1/me"))

    def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI description.

        Example: ``sorted(api.openapi()["paths"])``
        """
        return self._json("GET", "/openapi.json")

    # --- principals' lifecycle (an authority, its jurisdiction) ------------------

    def deactivate_principal(self, name: str, reason: str) -> PrincipalStatus:
        """An authority stops a principal's token (the reason is ledgered).

        Example: ``api.deactivate_principal("lucheng_credit", "contract ended")``
        """
        body = {"reason": reason}
        return _build(
            PrincipalStatus, self._json("POST", f"/v1/principals/{name}/deactivate", json=body)
        )

    def reactivate_principal(self, name: str, reason: str) -> PrincipalStatus:
        """An authority lets a deactivated principal in again.

        Example: ``api.reactivate_principal("lucheng_credit", "contract renewed")``
        """
        body = {"reason": reason}
        return _build(
            PrincipalStatus, self._json("POST", f"/v1/principals/{name}/reactivate", json=body)
        )

    def rotate_token(self, name: str) -> RotatedToken:
        """The principal's new token (shown once); its old token is refused from now on.

        Example: ``api.rotate_token("lucheng_credit").token``
        """
        return _build(RotatedToken, self._json("POST", f"/v1/principals/{name}/rotate-token"))

    # --- datasets and grants ---------------------------------------------------

    def list_datasets(self) -> list[DatasetSummary]:
        """The datasets you may see: names, versions, sizes.

        Example: ``[d.name for d in api.list_datasets()]``
        """
        return [_build(DatasetSummary, d) for d in self._json("GET", "/v1/datasets")]

    def show_dataset(self, name: str, version: int | None = None) -> DatasetDetail:
        """One dataset (its latest version, or ``version``) with its profile.

        Example: ``api.show_dataset("persons").profile["rows"]``
        """
        params = {"version": version} if version is not None else None
        return _build(DatasetDetail, self._json("GET", f"/v1/datasets/{name}", params=params))

    def register_upload(
        self,
        name: str,
        file: Path | str,
        classification: Path | str,
        *,
        text_columns: Iterable[str] | None = None,
        sheet: str | None = None,
        header: str | None = None,
    ) -> Registration:
        """Upload a data file (CSV, Parquet, JSON lines, an Excel workbook's ``sheet`` with
        its ``header`` row, e.g. ``"2"`` or ``"1-2"``) with its classification YAML.

        Example: ``api.register_upload("persons", "persons.csv", "persons.yaml",
        text_columns=["pid"]).version``
        """
        file, classification = Path(file), Path(classification)
        data = {"name": name}
        if text_columns:
            data["text"] = ",".join(text_columns)
        for key, value in (("sheet", sheet), ("header", header)):
            if value is not None:
                data[key] = value
        with open(file, "rb") as fh, open(classification, "rb") as ch:
            files = {
                "file": (file.name, fh, "application/octet-stream"),
                "classification": (classification.name, ch, "application/yaml"),
            }
            body = self._json("POST", "/v1/datasets/upload", data=data, files=files)
        return _build(Registration, body)

    def register_uri(self, name: str, uri: str, classification: dict | Path | str) -> Registration:
        """Register a server-side source (a file under api.source_roots, or a database URI).

        Example: ``api.register_uri("firms", "postgresql://db.example/registry?table=firms",
        "firms.yaml")``
        """
        if not isinstance(classification, dict):
            import yaml

            classification = yaml.safe_load(Path(classification).read_text(encoding="utf-8"))
        payload = {"name": name, "uri": uri, "classification": classification}
        return _build(Registration, self._json("POST", "/v1/datasets", json=payload))

    def list_grants(self) -> list[GrantSummary]:
        """The grants this principal may see, each with the job kinds it covers.

        Example: ``[(g.dataset, g.kinds) for g in api.list_grants()]``
        """
        return [_build(GrantSummary, g) for g in self._json("GET", "/v1/grants")]

    # --- jobs -----------------------------------------------------------------

    def submit_job(
        self, sql: str, kind: str = "sql_aggregate", *, idempotency_key: str | None = None
    ) -> Job:
        """202: the job is ``queued`` (the server runs it) or ``refused`` (reason says why).

        Sent with an ``Idempotency-Key`` (a fresh one per call unless you give one), so
        a retried request makes no second job; the same key again answers that job.

        Example: ``api.submit_job("SELECT county, COUNT(*) AS n FROM persons GROUP BY county")``
        """
        key = idempotency_key or uuid.uuid4().hex
        body = {"sql": sql, "kind": kind}
        headers = {"Idempotency-Key": key}
        return _build(Job, self._json("POST", "/v1/jobs", json=body, headers=headers))

    def job(self, job_id: int, *, wait: float = 0.0) -> Job:
        """A job's state; ``wait`` seconds of long-polling until it changes.

        Example: ``api.job(job.job, wait=10).state``
        """
        params = {"wait": wait} if wait else None
        return _build(Job, self._json("GET", f"/v1/jobs/{job_id}", params=params))

    def wait_job(self, job_id: int, timeout: float = 120.0) -> Job:
        """Long-poll until the job ends (released, withheld, refused, failed) or ``timeout``.

        Example: ``api.wait_job(api.submit_job(sql).job, timeout=60).state``
        """
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while not job.done and time.monotonic() < deadline:
            job = self.job(job_id, wait=min(LONG_POLL_S, max(0.1, deadline - time.monotonic())))
        return job

    def iter_jobs(self, page_size: int = 100) -> Iterator[JobSummary]:
        """Your jobs, fetched a page at a time (``limit`` and the next links).

        Example: ``sum(1 for j in api.iter_jobs(page_size=200) if j.state == "released")``
        """
        for row in self._paged("/v1/jobs", page_size):
            yield _build(JobSummary, row)

    def list_jobs(self) -> list[JobSummary]:
        """Your jobs (an authority: those of its jurisdiction).

        Example: ``[(j.id, j.state) for j in api.list_jobs()]``
        """
        return [_build(JobSummary, j) for j in self._json("GET", "/v1/jobs")]

    # --- PSI matches (docs/psi.md) ------------------------------------------------

    def psi(
        self,
        dataset: str,
        column: str,
        items: Iterable[object],
        mode: str = "cardinality",
        consent: str | None = None,
        *,
        group_by: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> PsiResult:
        """Match your own ``items`` against a dataset column; the client half runs here.

        Returns a :class:`sandbox.client.psi.PsiResult`: ``count`` always, ``items`` (the
        matched items, normalised) in membership mode, ``groups`` with ``group_by``.
        The platform's setup is fetched once per dataset version (ETag) and kept here.

        Example: ``api.psi("persons", "pid", ["P0000001", "P0000002"]).count``
        """
        from sandbox.client.psi import HttpTransport, run_psi

        cache = self.__dict__.setdefault("_psi_setups", {})
        return run_psi(
            HttpTransport(self),
            dataset,
            column,
            items,
            mode=mode,
            consent=consent,
            group_by=group_by,
            progress=progress,
            cache=cache,
        )

    def set_psi_terms(
        self,
        dataset: str,
        column: str,
        *,
        agreement: int | None = None,
        grant: int | None = None,
        mode: str = "cardinality",
        min_items: int | None = None,
        max_items: int | None = None,
        daily_cap: int | None = None,
        group_dimensions: Sequence[str] = (),
        group_threshold: int | None = None,
        consent_required: bool = False,
    ) -> int:
        """The authority's PSI terms of an agreement (or a direct grant) on one column;
        returns their id.

        Example: ``api.set_psi_terms("persons", "pid", agreement=3, min_items=100, daily_cap=5)``
        """
        body = {"dataset": dataset, "column": column, "agreement": agreement, "grant": grant,
                "mode": mode, "min_items": min_items, "max_items": max_items,
                "daily_cap": daily_cap, "group_dimensions": list(group_dimensions),
                "group_threshold": group_threshold,
                "consent_required": consent_required}  # fmt: skip
        return int(self._json("POST", "/v1/psi/terms", json=body)["id"])

    # --- HE aggregate (docs/he.md) ------------------------------------------------

    def he_sum(
        self,
        dataset: str,
        key_column: str,
        by: str | list[str],
        keys: list[str],
        values: Sequence[float],
        scheme: str = "ckks",
        *,
        context: Any = None,
    ) -> HeResult:
        """Encrypted sums of ``values`` per group of ``by``; the secret key stays here.

        Returns a :class:`sandbox.client.he.HeResult` (decrypted sums, subjects per
        released group; nothing about withheld groups or unmatched keys). ``context``:
        a private TenSEAL context of :func:`sandbox.client.he.make_context` to reuse
        (making one takes seconds).

        Example: ``api.he_sum("payments", "pid", "county", ["P01"], [3.5]).groups``
        """
        from sandbox.client import he as client_he

        ctx = context or client_he.make_context(scheme)
        by = [by] if isinstance(by, str) else list(by)
        body = client_he.build_request(ctx, dataset, key_column, by, keys, values, scheme)
        response = self._call(
            "POST",
            "/v1/he/sum",
            content=body,
            headers={"content-type": "application/octet-stream"},
            timeout=max(600.0, self._http.timeout.read or 0),
        )
        return client_he.decrypt_answer(ctx, response.content)


def dumps(obj: Any) -> str:
    """JSON of a result (dataclasses included), for printing."""
    from dataclasses import asdict, is_dataclass

    def default(o):
        return asdict(o) if is_dataclass(o) else str(o)

    return json.dumps(obj, default=default, indent=2, ensure_ascii=False)
