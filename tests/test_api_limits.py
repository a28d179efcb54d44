"""Limits and server-side sources, on a server with small caps; two workers share one queue.

The server of this module has a 10 KiB body cap, a 50 KiB upload cap, 20
requests per minute per principal and one allowed source folder. Every error
response is checked against the envelope by the client hook.
"""

from __future__ import annotations

import time

import httpx
import pytest
from api_server import ApiServer, check_envelope, host_grant, make_home, write_persons

from policies.errors import InputError, PayloadTooLarge, RateLimited
from sandbox.client import Client

SQL = "SELECT county, COUNT(*) AS n, SUM(income) AS income FROM persons GROUP BY county"


def _hook(response: httpx.Response) -> None:
    check_envelope(response)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    allowed = root / "allowed"
    allowed.mkdir()
    tokens = make_home(
        root / "home",
        "[api]\nmax_body_mb = 0.01\nmax_upload_mb = 0.05\nrate_per_minute = 20\n"
        f'source_roots = ["{allowed}"]\n',
    )
    server = ApiServer(root / "home").start()
    yield {"server": server, "tokens": tokens, "root": root, "allowed": allowed}
    server.stop()


def client(small, name: str) -> Client:
    # retry=None: these tests read the 429 itself (tests/test_client_habits.py the retries)
    return Client(small["server"].url, small["tokens"][name], hooks=[_hook], retry=None)


def test_body_over_the_cap_is_413_naming_the_limit(small):
    with client(small, "operator") as c:
        with pytest.raises(PayloadTooLarge, match=r"0\.01 MiB \(setting api.max_body_mb\)") as info:
            c.submit_job("SELECT 1 " + "x" * 20_000)
        assert info.value.status == 413
    # Chunked, without Content-Length: counted while it streams in.
    headers = {"Authorization": f"Bearer {small['tokens']['operator']}"}

    def chunks():
        yield b'{"sql": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}'

    response = httpx.post(
        small["server"].url + "/v1/jobs",
        content=chunks(),
        headers={**headers, "content-type": "application/json"},
    )
    check_envelope(response)
    assert response.status_code == 413
    assert "api.max_body_mb" in response.json()["error"]["message"]


def test_upload_over_its_cap_is_413_naming_the_upload_limit(small):
    csv, yaml_path = write_persons(small["root"] / "big", rows=3000)  # about 90 KB
    with client(small, "provider") as c:
        with pytest.raises(PayloadTooLarge, match="api.max_upload_mb"):
            c.register_upload("big", csv, yaml_path)
        small_csv, small_yaml = write_persons(small["root"] / "fits", rows=400)
        assert c.register_upload("fits", small_csv, small_yaml).rows == 400  # over 10 KiB, fine


def test_server_side_files_only_under_source_roots(small, tmp_path):
    allowed = small["allowed"]
    csv, yaml_path = write_persons(allowed, rows=200)
    outside, _ = write_persons(tmp_path / "outside", rows=200)
    (allowed / "link.csv").symlink_to(outside)
    with client(small, "provider") as c:
        assert c.register_uri("local", str(csv), yaml_path).rows == 200
        assert c.register_uri("local2", f"csv://{csv}?text=pid", yaml_path).rows == 200
        for uri in (str(outside), str(allowed / "link.csv"), f"file://{allowed}/../outside.csv"):
            with pytest.raises(InputError, match="api.source_roots"):
                c.register_uri("evil", uri, yaml_path)
        with pytest.raises(InputError, match="absolute path"):
            c.register_uri("evil", "persons.csv", yaml_path)
        with pytest.raises(InputError, match="cannot be used"):
            c.register_uri("evil", "s3://bucket/x.parquet", yaml_path)


def test_rate_limit_is_429_per_principal_naming_the_limit(small):
    with client(small, "consumer") as c, client(small, "auditor") as other:
        with pytest.raises(RateLimited, match="20 requests per minute") as info:
            for _ in range(25):
                c.me()
        assert info.value.status == 429
        assert "api.rate_per_minute" in info.value.message
        assert other.me().name == "auditor"  # another principal has its own bucket
    response = httpx.get(
        small["server"].url + "/v1/me",
        headers={"Authorization": f"Bearer {small['tokens']['consumer']}"},
    )
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1


def test_two_workers_never_run_the_same_job(tmp_path):
    tokens = make_home(tmp_path / "home", "[job]\nspare_worker = false\n")
    csv, yaml_path = write_persons(tmp_path / "data", rows=400)
    with ApiServer(tmp_path / "home", workers=2) as server:
        prov = Client(server.url, tokens["provider"], hooks=[_hook])
        prov.register_upload("persons", csv, yaml_path)
        host_grant(tmp_path / "home", "operator", "persons")
        op = Client(server.url, tokens["operator"], hooks=[_hook])
        ids = [op.submit_job(SQL).job for _ in range(6)]
        states = [op.wait_job(i, timeout=60).state for i in ids]
        assert states == ["released"] * 6, server.log()
        auditor = Client(server.url, tokens["auditor"], hooks=[_hook])
        for job_id in ids:
            running = auditor.ledger(subject=f"job:{job_id}", action="job.running")
            assert len(running) == 1, job_id
        assert auditor.verify_ledger().entries > 0


def _take_many(folder: str, key: int, times: int) -> int:
    """In a process of its own: how many of ``times`` requests the shared bucket allowed."""
    from pathlib import Path

    from sandbox.api.limits import RateLimiter

    limiter = RateLimiter(20, Path(folder))
    allowed = 0
    for _ in range(times):
        try:
            limiter.take(key)
            allowed += 1
        except RateLimited:
            pass
    limiter.close()
    return allowed


def test_the_rate_limit_is_shared_by_processes(tmp_path):
    """Two processes drawing 15 requests each from a bucket of 20 a minute get 20
    together, not 30 (as two in-memory buckets would give)."""
    import multiprocessing

    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        allowed = pool.starmap(_take_many, [(str(tmp_path), 7, 15), (str(tmp_path), 7, 15)])
    refill = int((time.monotonic() - started) * 20 / 60) + 1
    assert 20 <= sum(allowed) <= 20 + refill, allowed
    assert all(a > 0 for a in allowed) or sum(allowed) == 20
    assert _take_many(str(tmp_path), 8, 3) == 3  # another principal has its own bucket


def test_two_server_processes_share_one_bucket_per_principal(tmp_path):
    """``--workers 2``: requests on fresh connections land on both processes; the
    principal still gets its one minute's allowance in all."""
    tokens = make_home(tmp_path / "home", "[api]\nrate_per_minute = 20\n")
    with ApiServer(tmp_path / "home", workers=2) as server:
        started = time.monotonic()
        codes = []
        for _ in range(40):
            response = httpx.get(
                server.url + "/v1/me",
                headers={"Authorization": f"Bearer {tokens['consumer']}", "Connection": "close"},
            )
            codes.append(response.status_code)
        refill = int((time.monotonic() - started) * 20 / 60) + 1
    assert set(codes) <= {200, 429}, codes
    assert 20 <= codes.count(200) <= 20 + refill, codes
