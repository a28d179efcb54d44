"""The HTTP API through the real client against a real uvicorn on 127.0.0.1.

One server per module and store (``api``; the module runs on SQLite and on PostgreSQL,
``api_store``): a platform home with one principal per role;
the provider uploads a dataset, the authority grants it, the operator's job is
run by the server's executor and released. Then every route is called with
every role: no route returns data its role may not see. Every error response
any test saw goes through :func:`check_envelope` (a client hook), and the last
test checks that many were seen.
"""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from api_server import ApiServer, check_envelope, host_grant, make_home, write_persons

from policies.errors import (
    AuthError,
    ClassificationError,
    InputError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from sandbox.client import Client

SEEN_ERRORS: list[int] = []

GROUP_SQL = "SELECT county, sex, COUNT(*) AS persons, SUM(income) AS income FROM persons GROUP BY county, sex"


def _hook(response: httpx.Response) -> None:
    if not response.is_success:
        check_envelope(response)
        SEEN_ERRORS.append(response.status_code)


@pytest.fixture(scope="module")
def api(tmp_path_factory, api_store):
    root = tmp_path_factory.mktemp("api")
    tokens = make_home(root / "home", store_url=api_store)
    server = ApiServer(root / "home").start()
    clients = {name: Client(server.url, token, hooks=[_hook]) for name, token in tokens.items()}
    clients["anonymous"] = Client(server.url, None, hooks=[_hook])
    csv, yaml_path = write_persons(root / "data")
    clients["provider"].register_upload("persons", csv, yaml_path)
    host_grant(root / "home", "operator", "persons")
    job = clients["operator"].submit_job(GROUP_SQL)
    done = clients["operator"].wait_job(job.job, timeout=60)
    assert done.state == "released", (done, server.log())
    state = {"server": server, "c": clients, "job": done, "root": root, "tokens": tokens}
    yield state
    for client in clients.values():
        client.close()
    server.stop()


def test_health_ready_and_openapi(api):
    c = api["c"]["anonymous"]
    assert c.health() == "ok"
    assert c.ready() == "ready"
    paths = c.openapi()["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/products/{product_id}/zip", "/v1/ledger"):
        assert path in paths


def test_released_job_has_report_and_product(api):
    job = api["job"]
    assert job.product == f"prod-{job.job:06d}"
    assert job.report["verdict"].startswith("released")
    assert job.reason is None


def test_refused_job_is_202_with_rule_and_article(api):
    job = api["c"]["operator"].submit_job("SELECT pid, income FROM persons")
    assert job.state == "refused"
    assert job.reason["article"].startswith("Art.")
    assert job.reason["rule"]
    assert "P000" not in str(job.reason)  # no protected value in the refusal


def test_unauthenticated_is_401_on_every_v1_route(api):
    c = api["c"]["anonymous"]
    for call in (
        c.me,
        c.list_datasets,
        lambda: c.show_dataset("persons"),
        c.list_jobs,
        lambda: c.job(api["job"].job),
        c.list_products,
        lambda: c.product_manifest(api["job"].product),
        c.ledger,
        c.verify_ledger,
        lambda: c.submit_job(GROUP_SQL),
        lambda: c._json("POST", "/v1/grants", json={}),
    ):
        with pytest.raises(AuthError) as info:
            call()
        assert info.value.status == 401
    bad = Client(api["server"].url, "sbx_not-a-token", hooks=[_hook])
    with pytest.raises(AuthError, match="not valid"):
        bad.me()
    bad.close()


def test_me_and_dataset_list_for_every_role(api):
    for name, client in api["c"].items():
        if name == "anonymous":
            continue
        assert client.me().name == name
        assert [d.name for d in client.list_datasets()] == ["persons"]


def test_dataset_show_profile_only_to_owner_authority_auditor(api):
    c = api["c"]
    for name in ("provider", "authority", "auditor"):
        detail = c[name].show_dataset("persons")
        assert detail.profile is not None and detail.classification is not None, name
    for name in ("operator", "operator2", "reviewer"):
        detail = c[name].show_dataset("persons")
        assert detail.profile is None, name
        assert detail.classification["entity_key"] == "pid"
    consumer = c["consumer"].show_dataset("persons")
    assert consumer.profile is None and consumer.classification is None
    with pytest.raises(PermissionDenied, match="another provider"):
        c["provider2"].show_dataset("persons")
    with pytest.raises(NotFound, match="no dataset named"):
        c["auditor"].show_dataset("nope")


def test_registration_only_by_providers(api):
    csv, yaml_path = write_persons(api["root"] / "data2", rows=50)
    for name in ("authority", "operator", "consumer", "auditor", "reviewer"):
        with pytest.raises(PermissionDenied, match="only a provider"):
            api["c"][name].register_upload("other", csv, yaml_path)
        with pytest.raises(PermissionDenied):
            api["c"][name].register_uri("other", str(csv), yaml_path)


def test_upload_errors_name_the_problem(api):
    c = api["c"]["provider"]
    csv, yaml_path = write_persons(api["root"] / "data3", rows=50)
    bad_yaml = api["root"] / "bad.yaml"
    bad_yaml.write_text("entity_key: pid\ncolumns:\n  pid: identifier\n")
    with pytest.raises(ClassificationError):
        c.register_upload("partial", csv, bad_yaml)  # county, sex, income unclassified
    odd = api["root"] / "persons.exe"
    odd.write_bytes(csv.read_bytes())
    with pytest.raises(InputError, match="must end in one of"):
        c.register_upload("odd", odd, yaml_path)
    same = c.register_upload("persons", *write_persons(api["root"] / "data4"))
    assert same.changed is False and same.version == 1


def test_server_side_uri_refused_without_source_roots(api):
    csv, yaml_path = write_persons(api["root"] / "data5", rows=50)
    with pytest.raises(InputError, match="api.source_roots"):
        api["c"]["provider"].register_uri("srv", str(csv), yaml_path)
    with pytest.raises(InputError, match="cannot be used"):
        api["c"]["provider"].register_uri("srv", "http://127.0.0.1/x.csv", yaml_path)


def test_no_direct_grant_over_the_api(api):
    """Art. 13, 14: data use is granted under an agreement; the direct grant is host-only."""
    body = {"operator": "operator2", "dataset": "persons", "until": "2099-12-31"}
    for name in ("authority", "provider", "operator", "consumer", "auditor", "reviewer"):
        with pytest.raises(PermissionDenied, match="host only") as info:
            api["c"][name]._json("POST", "/v1/grants", json=body)
        assert info.value.code == "direct_grant_host_only" and info.value.status == 403
    assert api["c"]["operator2"].list_grants() == []
    assert not hasattr(api["c"]["authority"], "add_grant")


def test_grants_listed_by_role_with_their_kinds(api):
    c = api["c"]
    [mine] = c["operator"].list_grants()
    assert (mine.operator, mine.dataset, mine.kinds) == ("operator", "persons", ["sql_aggregate"])
    assert mine.in_term and mine.status == "active"
    assert c["operator2"].list_grants() == []  # another operator's grants stay unseen
    assert [g.id for g in c["authority"].list_grants()] == [mine.id]
    assert [g.id for g in c["auditor"].list_grants()] == [mine.id]
    assert [g.id for g in c["provider"].list_grants()] == [mine.id]  # on its dataset
    assert c["provider2"].list_grants() == []
    for name in ("consumer", "reviewer"):
        with pytest.raises(PermissionDenied, match="Art. 14"):
            c[name].list_grants()


def test_ledger_filters_refuse_malformed_times(api):
    c = api["c"]["auditor"]
    for field in ("since", "until"):
        with pytest.raises(InputError, match=f"{field} 'garbage' is not an ISO date"):
            c.ledger(**{field: "garbage"})
    everything = c.ledger(limit=10_000)
    today = everything[-1].ts[:10]
    assert c.ledger(since=today, limit=10_000) == [e for e in everything if e.ts >= today]
    assert c.ledger(until=today, limit=10_000) == everything  # a date takes in its whole day
    assert c.ledger(until="2000-01-01") == []


def test_jobs_by_role(api):
    c, job = api["c"], api["job"]
    for name in ("provider", "authority", "consumer", "auditor", "reviewer"):
        with pytest.raises(PermissionDenied):
            c[name].submit_job(GROUP_SQL)
    assert {j.id for j in c["operator"].list_jobs()} >= {job.job}
    assert c["operator2"].list_jobs() == []
    for name in ("authority", "auditor"):
        assert job.job in {j.id for j in c[name].list_jobs()}
        assert c[name].job(job.job).state == "released"
    for name in ("provider", "consumer", "reviewer"):
        with pytest.raises(PermissionDenied):
            c[name].list_jobs()
        with pytest.raises(PermissionDenied):
            c[name].job(job.job)
    with pytest.raises(NotFound):
        c["operator2"].job(job.job)  # another operator's job does not exist for it
    with pytest.raises(NotFound):
        c["operator"].job(999_999)


def test_long_poll_returns_when_the_job_ends(api):
    c = api["c"]["operator"]
    queued = c.submit_job("SELECT sex, COUNT(*) AS n FROM persons GROUP BY sex")
    assert queued.state == "queued"
    done = c.job(queued.job, wait=30)
    assert done.state == "released"
    with pytest.raises(InvalidRequest, match="wait"):
        c.job(queued.job, wait=3600)  # over the cap: 422 in the envelope


def test_products_by_role_and_downloads_are_ledgered(api, tmp_path):
    c, product = api["c"], api["job"].product
    for name in ("operator", "authority", "auditor"):
        assert product in {p.id for p in c[name].list_products()}
        manifest = c[name].product_manifest(product)
        assert manifest["product"] == product
    assert c["operator2"].list_products() == []
    with pytest.raises(NotFound):
        c["operator2"].product_manifest(product)
    with pytest.raises(NotFound):
        c["operator2"].download_zip(product, tmp_path)
    for name in ("provider", "reviewer"):
        with pytest.raises(PermissionDenied):
            c[name].list_products()
        with pytest.raises(PermissionDenied):
            c[name].download_file(product, "output.csv", tmp_path)
    assert c["consumer"].list_products() == []  # nothing delivered to it (Art. 15)
    with pytest.raises(NotFound):
        c["consumer"].download_file(product, "output.csv", tmp_path)
    path = c["operator"].download_file(product, "output.csv", tmp_path)
    assert path.read_text(encoding="utf-8-sig").splitlines()[0].startswith('"county"')
    zipped = c["operator"].download_zip(product, tmp_path)
    names = zipfile.ZipFile(io.BytesIO(zipped.read_bytes())).namelist()
    assert f"{product}/manifest.json" in names and f"{product}/manifest.sig" in names
    with pytest.raises(NotFound, match="has no file"):
        c["operator"].download_file(product, "secret.txt", tmp_path)
    entries = c["auditor"].ledger(subject=f"product:{product}", action="product.download")
    files = [e.details["file"] for e in entries if e.actor == "operator"]
    assert "output.csv" in files and "zip" in files


def test_ledger_by_role_and_verify(api):
    c = api["c"]
    for name in ("auditor", "authority"):
        entries = c[name].ledger(limit=5)
        assert len(entries) == 5 and entries[0].seq == 1
        assert c[name].ledger(action="job.released")
    for name in ("provider", "operator", "consumer", "reviewer"):
        with pytest.raises(PermissionDenied):
            c[name].ledger()
    for name in api["tokens"]:
        report = c[name].verify_ledger()
        assert report.entries == report.head_seq > 10


def test_unknown_route_wrong_method_validation_in_envelope(api):
    url, token = api["server"].url, api["tokens"]["operator"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, event_hooks={"response": []}) as h:
        cases = [
            (h.get("/v1/nothing"), 404, "not_found"),
            (h.delete("/v1/jobs"), 405, "method_not_allowed"),
            (h.post("/v1/jobs", json={"sql": ""}), 422, "invalid_request"),
            (
                h.post(
                    "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
                ),
                422,
                "invalid_request",
            ),
            (h.get("/v1/jobs/abc"), 422, "invalid_request"),
            (h.get("/v1/jobs/99999999999999999999"), 422, "invalid_request"),
        ]
        for response, status, code in cases:
            response.read()
            _hook(response)
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code


def test_every_error_response_had_the_envelope():
    # Runs last in this module: every error above passed check_envelope in the hook.
    assert len(SEEN_ERRORS) > 60
    assert {401, 403, 404, 405, 422} <= set(SEEN_ERRORS)
