"""The Python client's habits (issue 26): retries on 429 and 503 honouring ``Retry-After``,
a product as a table (``client.product(id).to_arrow()`` / ``.to_pandas()``), and a
docstring with an example on every public method.

The rate limit is the real server's (``api.rate_per_minute`` = 30: a burst of 30, then
one request every 2 s); the 503 comes from a small HTTP server of the test's own that
answers 503 with ``Retry-After`` once, then 200.
"""

from __future__ import annotations

import http.server
import inspect
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pyarrow as pa
import pytest
from api_server import ApiServer, host_grant, make_home, write_persons

from policies.errors import IntegrityError, RateLimited
from sandbox.client import Client, RetryPolicy
from sandbox.client.retry import retry_after
from sandbox.core.keys import create_key

RATE = 30
SQL = "SELECT county, sex, COUNT(*) AS n, SUM(income) AS total FROM persons GROUP BY county, sex"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    tokens = make_home(root / "home", f"[api]\nrate_per_minute = {RATE}\n")
    with ApiServer(root / "home") as server:
        csv, yaml_path = write_persons(root / "data")
        with Client(server.url, tokens["provider"]) as provider:
            provider.register_upload("persons", csv, yaml_path)
        host_grant(root / "home", "operator", "persons")
        with Client(server.url, tokens["operator"]) as operator:
            job = operator.wait_job(operator.submit_job(SQL).job)
        assert job.state == "released" and job.product, job
        yield server, tokens, job.product, root


def test_a_429_is_sent_again_after_retry_after_and_succeeds(served):
    server, tokens, _product, _root = served
    seen: list[httpx.Response] = []
    with Client(server.url, tokens["consumer"], hooks=[seen.append]) as api:
        started = time.monotonic()
        names = {api.me().name for _ in range(RATE + 3)}
        took = time.monotonic() - started
    assert names == {"consumer"}
    limited = [r for r in seen if r.status_code == 429]
    assert limited, "the burst did not reach the server's limit"
    waits = [int(r.headers["retry-after"]) for r in limited]
    assert took >= sum(waits) - 0.5, (took, waits)  # each wait was the server's, not less


def test_without_retries_the_first_429_is_raised_with_its_wait(served):
    server, tokens, _product, _root = served
    with Client(server.url, tokens["auditor"], retry=None) as api:
        with pytest.raises(RateLimited, match="api.rate_per_minute") as info:
            for _ in range(RATE + 3):
                api.me()
    assert info.value.status == 429


def test_a_wait_longer_than_the_policy_allows_is_raised_at_once(served):
    server, tokens, _product, _root = served
    with Client(server.url, tokens["authority"], retry=RetryPolicy(max_wait_s=0.5)) as api:
        started = time.monotonic()
        with pytest.raises(RateLimited):
            for _ in range(RATE + 3):
                api.me()
        assert time.monotonic() - started < 5


class _Busy(http.server.BaseHTTPRequestHandler):
    """503 with Retry-After once per path, then 200: a service that is starting."""

    answered: set[str] = set()
    times: list[float] = []

    def do_GET(self):  # noqa: N802 - the standard library's name
        _Busy.times.append(time.monotonic())
        if self.path not in _Busy.answered:
            _Busy.answered.add(self.path)
            body = b'{"error": {"code": "not_ready", "message": "starting"}}'
            self.send_response(503)
            self.send_header("Retry-After", "1")
        else:
            body = b'{"status": "ok"}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_503_is_sent_again_after_its_retry_after():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with Client(url) as api:
            assert api.health() == "ok"
        assert len(_Busy.times) == 2 and _Busy.times[1] - _Busy.times[0] >= 0.95
        with Client(url, retry=None) as api:
            with pytest.raises(Exception, match="starting") as info:
                api.ready()
            assert getattr(info.value, "status", None) == 503
    finally:
        server.shutdown()


class _BusyUpload(http.server.BaseHTTPRequestHandler):
    """The first upload gets 503 with Retry-After: 0; each body's size is kept."""

    sizes: list[int] = []

    def do_POST(self):  # noqa: N802 - the standard library's name
        size = int(self.headers["Content-Length"])
        self.rfile.read(size)
        _BusyUpload.sizes.append(size)
        first = len(_BusyUpload.sizes) == 1
        body = (
            b'{"error": {"code": "not_ready", "message": "starting"}}'
            if first
            else b'{"dataset": "d", "version": 1, "rows": 1, "sha256": "0", "bytes": 1}'
        )
        self.send_response(503 if first else 200)
        if first:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_retried_upload_sends_the_files_whole(tmp_path):
    data, yaml_path = tmp_path / "d.csv", tmp_path / "d.yaml"
    data.write_text("pid,n\n" + "".join(f"P{i},{i}\n" for i in range(2000)))
    yaml_path.write_text("entity_key: pid\ncolumns:\n  pid: identifier\n  n: measure\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BusyUpload)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Client(f"http://127.0.0.1:{server.server_address[1]}") as api:
            try:
                api.register_upload("d", data, yaml_path)
            except Exception:  # the answer's shape is the test server's, not the platform's
                pass
    finally:
        server.shutdown()
    assert len(_BusyUpload.sizes) == 2
    assert _BusyUpload.sizes[0] == _BusyUpload.sizes[1] > data.stat().st_size


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    assert retry_after("7") == 7.0
    assert retry_after(format_datetime(now + timedelta(seconds=20), usegmt=True), now) == 20.0
    assert retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_a_product_as_arrow_and_pandas_with_integers_and_flags(served):
    server, tokens, product, _root = served
    with Client(server.url, tokens["operator"]) as api:
        table = api.product(product).to_arrow()
        frame = api.product(product).to_pandas()
    assert table.column_names == ["county", "sex", "n", "n_flag", "total", "total_flag"]
    assert table.schema.field("total").type == pa.int64()  # SUM of integers: not a decimal
    # write_persons: each county holds one sex only, so its count would tell everyone's sex (class rule)
    assert table.column("n_flag").to_pylist() == ["suppressed"] * 4
    assert str(frame["n"].dtype) == "Int64" and frame["n"].isna().all()
    assert str(frame["total"].dtype) == "Int64" and frame["total"].notna().all()
    assert str(frame["n_flag"].dtype).startswith("string") and len(frame) == 4


def test_a_product_checked_against_another_key_is_refused(served, tmp_path):
    server, tokens, product, _root = served
    stranger = create_key(tmp_path / "keys")
    with Client(server.url, tokens["operator"]) as api:
        with pytest.raises(IntegrityError, match="signature does not match"):
            api.product(product, public_key=stranger).to_arrow()
        with pytest.raises(IntegrityError, match="not in the signed manifest"):
            api.product(product).file("secrets.txt")


def test_every_public_method_of_the_client_has_a_docstring_with_an_example():
    public = [m for m in inspect.getmembers(Client, inspect.isfunction) if m[0][0] != "_"]
    missing = [name for name, method in public if "Example" not in (method.__doc__ or "")]
    assert not missing, (
        f"public client methods without an example in their docstring: {missing}; end each "
        "docstring with a line 'Example: ``api.method(...)``' (issue 26)"
    )
    assert len(public) >= 72  # the mixins' methods (workflow, sources, products) too


def test_a_handle_fetches_its_product_once_and_is_one_download_in_the_ledger(served):
    server, tokens, product, _root = served
    seen: list[httpx.Response] = []
    with Client(server.url, tokens["auditor"]) as auditor:
        before = len(auditor.ledger(action="product.download", subject=f"product:{product}"))
    with Client(server.url, tokens["operator"], hooks=[seen.append]) as api:
        handle = api.product(product)
        table = handle.to_arrow()
        frame = handle.to_pandas()
        assert handle.file("report.md").startswith(b"# Product")
        assert set(handle.manifest()["files"]) >= {"output.parquet", "report.md"}
    assert table.num_rows == len(frame) == 4
    fetched = [r.request.url.path for r in seen if "/v1/products/" in r.request.url.path]
    assert fetched == [f"/v1/products/{product}/zip"], fetched
    with Client(server.url, tokens["auditor"]) as auditor:
        entries = auditor.ledger(action="product.download", subject=f"product:{product}")
    assert len(entries) == before + 1 and entries[-1].details["file"] == "zip"
