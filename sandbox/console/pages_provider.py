"""The provider's pages: its datasets, each version's quality profile as a table and a
chart, who uses the data (the grants on it), a classification editor that checks the
YAML as it is typed, and its decisions on data requests (the inbox lists them;
:func:`sandbox.workflow.requests.approve` and ``refuse_request`` decide, as
``POST /v1/data-requests/{id}/approve`` and ``/refuse`` do).

The editor checks with the functions ``sandbox dataset register`` uses:
:func:`sandbox.data.vault.parse_classification` (the YAML, then the classification's
schema, the first problem named with its key or column) and
:meth:`~policies.classes.Classification.check_against` (every column of the dataset
classified, none unknown). Saving registers a new version with
:func:`sandbox.data.vault.register`, the function of ``sandbox dataset register`` and of
``POST /v1/datasets``, reading the data again from the source the platform kept for the
dataset (:func:`sandbox.data.kept_sources.kept_uri`, the one ``sandbox dataset refresh``
reads). Known shortcut: the vault offers no registration of the same snapshot under
another classification, so a dataset registered from an upload (no source kept) cannot be
saved here; the page says so and names the CLI command and the API route that take the
data again.

A provider sees its own datasets (the authority and auditors every one, as the API's
``GET /v1/datasets/{name}`` shows them the profile); the grants come from
:func:`sandbox.data.grants.list_grants`, whose rule gives a provider the grants on its
own datasets only. Values never appear: a profile holds counts and rates.
"""

from __future__ import annotations

import json
import shutil
from typing import Annotated, Any

import yaml
from fastapi import File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from policies.errors import (
    ClassificationError,
    InputError,
    NotFound,
    PermissionDenied,
    SandboxError,
)
from sandbox.console.charts import columns_svg
from sandbox.console.i18n import translator
from sandbox.console.web import (
    CSP_SVG,
    PREFIX,
    CurrentSession,
    FormSession,
    Id,
    console_router,
    language,
    redirect,
    render,
)
from sandbox.core.codes import status_for
from sandbox.core.principals import Principal, Role
from sandbox.data.grants import list_grants
from sandbox.data.kept_sources import kept_uri
from sandbox.data.refresh import list_sources
from sandbox.data.uploads import save_upload, scrub, upload_name, upload_suffix
from sandbox.data.vault import get_version, list_datasets, parse_classification, register
from sandbox.workflow import requests as data_requests

router = console_router()

READERS = (Role.PROVIDER, Role.AUTHORITY, Role.AUDITOR)
VERSIONS_SHOWN = 20
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
REASON_MAX = 2000
YAML_MAX = 200_000


def _require(viewer: Principal) -> None:
    if viewer.role not in READERS:
        raise PermissionDenied(
            f"a {viewer.role.value} does not read datasets' quality profiles (Art. 14)",
            article="Art. 14",
        )


def _mine(viewer: Principal, provider_id: int) -> bool:
    return viewer.role is not Role.PROVIDER or provider_id == viewer.id


@router.get("/datasets")
def datasets_page(request: Request, session: CurrentSession) -> Response:
    me = session.principal
    _require(me)
    with request.app.state.platform.store.read() as conn:
        items = [d for d in list_datasets(conn) if _mine(me, d["provider_id"])]
    return render(request, "datasets.html", {"items": items})


def _version(request: Request, me: Principal, name: str, version: int | None):
    _require(me)
    platform = request.app.state.platform
    with platform.store.read() as conn:
        found = get_version(conn, platform, name, version)
        if not _mine(me, found.provider_id):
            raise NotFound(f"no dataset '{name}' of yours")
        grants = [g for g in list_grants(conn, me) if g["dataset"] == name]
    return found, grants


@router.get("/datasets/{name}")
def dataset_page(
    request: Request,
    session: CurrentSession,
    name: Annotated[str, PathParam(pattern=NAME)],
    version: int | None = None,
) -> Response:
    found, grants = _version(request, session.principal, name, version)
    columns: dict[str, Any] = found.profile.get("columns") or {}
    platform = request.app.state.platform
    with platform.store.read() as conn:
        latest = get_version(conn, platform, name).version
        first = max(1, latest - VERSIONS_SHOWN + 1)
        versions = [get_version(conn, platform, name, n) for n in range(latest, first - 1, -1)]
    return render(
        request,
        "dataset.html",
        {
            "d": found,
            "columns": columns,
            "profile": found.profile,
            "grants": grants,
            "versions": versions,
        },
    )


@router.get("/datasets/{name}/nulls.svg")
def dataset_nulls(
    request: Request,
    session: CurrentSession,
    name: Annotated[str, PathParam(pattern=NAME)],
    version: int | None = None,
) -> Response:
    """The null rate of each column of a version, as an SVG image."""
    found, _grants = _version(request, session.principal, name, version)
    columns = found.profile.get("columns") or {}
    t = translator(language(request))
    labels = {
        "title": t("datasets.chart_title", name=name, version=found.version),
        "x": t("datasets.null_rate"),
        "y": t("columns"),
    }
    rates = [float(c.get("null_rate") or 0.0) for c in columns.values()]
    return Response(
        columns_svg(list(columns), rates, labels),
        media_type="image/svg+xml",
        headers={"Content-Security-Policy": CSP_SVG},
    )


@router.post("/requests/{request_id}/approve")
def request_approve(
    request: Request,
    session: FormSession,
    request_id: Id,
) -> Response:
    """The dataset's provider approves a data request; the grant follows (Art. 14)."""
    data_requests.approve(request.app.state.platform, session.principal, request_id)
    return redirect("/inbox")


@router.post("/requests/{request_id}/refuse")
def request_refuse(
    request: Request,
    session: FormSession,
    request_id: Id,
    reason: Annotated[str, Form(max_length=REASON_MAX)] = "",
) -> Response:
    """The dataset's provider refuses a data request, with the reason (Art. 14)."""
    data_requests.refuse_request(request.app.state.platform, session.principal, request_id, reason)
    return redirect("/inbox")


@router.get("/datasets/{name}/classification")
def classification_page(
    request: Request,
    session: CurrentSession,
    name: Annotated[str, PathParam(pattern=NAME)],
) -> Response:
    """The editor, holding the latest version's classification as YAML."""
    me = session.principal
    found, _grants = _version(request, me, name, None)
    plain = json.loads(json.dumps(found.classification.to_dict()))  # tuples as lists
    text = yaml.safe_dump(plain, allow_unicode=True, sort_keys=False, width=88)
    return render(
        request,
        "classification.html",
        {
            "d": found,
            "text": text,
            "source": _source(request.app.state.platform, me, name),
            "upload": me.role is Role.PROVIDER,  # its provider may send the data again
        },
    )


def _source(platform, me: Principal, name: str) -> str | None:
    """The source (its password shown as ***) a save reads the data from again; None for
    a dataset registered from an upload, or for a reader that is not its provider."""
    if me.role is not Role.PROVIDER or kept_uri(platform, name) is None:
        return None
    return next((s["source"] for s in list_sources(platform, me) if s["dataset"] == name), None)


def _checked(found, text: str):
    """The classification typed, checked as the editor checks it (ClassificationError)."""
    parsed = parse_classification(text)
    parsed.check_against(list(found.profile.get("columns") or {}))
    return parsed


@router.post("/datasets/{name}/classification/check")
def classification_check(
    request: Request,
    session: FormSession,
    name: Annotated[str, PathParam(pattern=NAME)],
    text: Annotated[str, Form(max_length=YAML_MAX)] = "",
) -> Response:
    """The editor's check, as it is typed (htmx): valid, or the first problem by name."""
    found, _grants = _version(request, session.principal, name, None)
    try:
        parsed = _checked(found, text)
    except ClassificationError as exc:
        return render(request, "classification_check.html", {"error": exc.to_dict()})
    return render(request, "classification_check.html", {"ok": parsed.to_dict(), "error": None})


@router.post("/datasets/{name}/classification")
def classification_save(
    request: Request,
    session: FormSession,
    name: Annotated[str, PathParam(pattern=NAME)],
    text: Annotated[str, Form(max_length=YAML_MAX)] = "",
) -> Response:
    """Save the corrected classification as a new version: the editor's check, then
    :func:`~sandbox.data.vault.register` from the dataset's kept source (as ``sandbox
    dataset refresh`` reads it). Every refusal is shown in place and writes nothing (the
    registration checks everything before it writes a byte)."""
    platform, me = request.app.state.platform, session.principal
    found, _grants = _version(request, me, name, None)
    try:
        result = _register(platform, me, found, text)
    except SandboxError as exc:
        if request.headers.get("hx-request"):  # into the editor's result, as the check shows
            return render(request, "classification_check.html", {"error": exc.to_dict()})
        context = {"d": found, "text": text, "source": _source(platform, me, name)}
        context["error"] = exc.to_dict()
        return render(request, "classification.html", context, status=status_for(exc))
    if not result.changed:
        unchanged = {"unchanged": found.version, "error": None}
        if request.headers.get("hx-request"):
            return render(request, "classification_check.html", unchanged)
        context = {"d": found, "text": text, "source": _source(platform, me, name)}
        return render(request, "classification.html", {**context, **unchanged})
    target = f"{PREFIX}/datasets/{name}?version={result.version.version}"
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.post("/datasets/{name}/classification/upload")
async def classification_upload(
    request: Request,
    session: FormSession,
    name: Annotated[str, PathParam(pattern=NAME)],
    text: Annotated[str, Form(max_length=YAML_MAX)] = "",
    data: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """A dataset registered from an upload keeps no source to read again: its provider
    sends the data file again with the corrected classification, registered as
    ``POST /v1/datasets/upload`` registers it (:func:`~sandbox.data.vault.register`, the
    editor's check first). A refusal is shown in place, naming the file as uploaded, never
    the server's own paths; nothing is written."""
    platform, me = request.app.state.platform, session.principal
    found, _grants = _version(request, me, name, None)
    work = platform.work_dir()
    try:
        if data is None or not data.filename:
            raise InputError("data: choose the dataset's data file to send again (Art. 14)")
        suffix = upload_suffix(data.filename, None, None)
        target = work / f"upload{suffix}"
        await save_upload(data, target)
        parsed = _checked(found, text)
        try:
            result = await run_in_threadpool(register, platform, me, name, str(target), parsed)
        except SandboxError as exc:
            scrub(exc, {str(target): upload_name(data.filename, suffix)})
            raise
    except SandboxError as exc:
        context = {"d": found, "text": text, "source": None, "upload": True}
        context["error"] = exc.to_dict()
        return render(request, "classification.html", context, status=status_for(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not result.changed:
        context = {"d": found, "text": text, "source": None, "upload": True}
        return render(request, "classification.html", {**context, "unchanged": found.version})
    return RedirectResponse(f"{PREFIX}/datasets/{name}?version={result.version.version}", 303)


def _register(platform, me: Principal, found, text: str):
    """The new version, registered from the dataset's kept source with the classification
    typed (checked first as the editor checks it)."""
    name = found.dataset
    uri = kept_uri(platform, name) if me.role is Role.PROVIDER else None
    if me.role is Role.PROVIDER and uri is None:
        raise InputError(
            f"dataset '{name}' was registered from an upload: the platform keeps no source "
            f"to read it again; register it with the corrected classification: sandbox "
            f"dataset register {name} DATA_FILE --classification FILE, or POST "
            "/v1/datasets/upload (Art. 14)",
            article="Art. 14",
        )
    parsed = _checked(found, text)
    return register(platform, me, name, uri or "", parsed)  # the role is checked there
