"""PSI over HTTP against a real ``sandbox serve``: the client half, ETags, caps, the CLI.

The platform home is prepared in-process (a registry of firms, an operator with a
PSI grant and terms), then a real uvicorn serves it on loopback; the operator's
:class:`sandbox.client.Client` runs its half of the protocol here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import private_set_intersection.python as psi_lib
import pytest
from click.testing import CliRunner

from policies.errors import PayloadTooLarge, PolicyRefusal
from sandbox.client import Client
from sandbox.core.platform import Platform
from sandbox.core.principals import by_name
from sandbox.data.grants import add_grant
from sandbox.psi.terms import set_terms
from tests.api_server import ApiServer, check_envelope, make_home
from tests.psi_helpers import firm_code, register_firms

TOML = "[psi]\nbuild_processes = 2\nchunk_items = 300\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("psi-api")
    home = tmp / "home"
    tokens = make_home(home, TOML)
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            provider = by_name(conn, "provider")
            authority = by_name(conn, "authority")
        register_firms(platform, provider, tmp / "data", [firm_code(i) for i in range(1500)])
        grant = add_grant(
            platform,
            authority,
            "operator",
            "firms",
            until=(datetime.now(UTC) + timedelta(days=9)).isoformat(),
            job_kinds=("psi_match",),
        )
        set_terms(
            platform,
            authority,
            dataset="firms",
            column="code",
            grant_id=grant,
            mode="membership",
            min_items=100,
            daily_cap=50,
            group_dimensions=["county"],
        )
    finally:
        platform.close()
    with ApiServer(home) as server:
        yield server, tokens


def test_psi_over_http_cardinality_membership_groups_and_etag(served):
    server, tokens = served
    seen: list[httpx.Response] = []
    mine = [firm_code(i) for i in range(1000, 1800)]  # 500 registered, 300 not
    with Client(server.url, tokens["operator"], hooks=[seen.append]) as api:
        progress: list[tuple[int, int]] = []
        counted = api.psi("firms", "code", mine, progress=lambda d, t: progress.append((d, t)))
        assert counted.count == 500 and counted.items is None
        assert progress[-1] == (800, 800) and len(progress) == 3  # three chunks of <= 300
        listed = api.psi("firms", "code", [c.lower() + " " for c in mine], mode="membership")
        assert listed.items == sorted(firm_code(i) for i in range(1000, 1500))
        grouped = api.psi("firms", "code", mine, group_by="county")
        assert sum(grouped.groups.values()) == grouped.count == 500
    setups = [r for r in seen if r.request.url.path.endswith("/setup")]
    assert [r.status_code for r in setups] == [200, 304, 200]  # the group setup is another
    assert setups[0].headers["etag"] == setups[1].headers["etag"]
    for r in seen:
        if r.status_code != 304:  # not modified: no body at all
            check_envelope(r)


def test_refusals_and_caps_over_http(served):
    server, tokens = served
    seen: list[httpx.Response] = []
    with Client(server.url, tokens["operator"], hooks=[seen.append]) as api:
        with pytest.raises(PolicyRefusal) as exc:
            api.psi("firms", "code", [firm_code(1), firm_code(2)])
        assert exc.value.article == "Art. 15" and "minimum" in str(exc.value)
        session = api._json(
            "POST",
            "/v1/psi/sessions",
            json={"dataset": "firms", "column": "code", "mode": "cardinality", "list_size": 400},
        )
        client = psi_lib.client.CreateWithNewKey(False)
        body = client.CreateRequest([f"Z{i}" for i in range(301)]).SerializeToString()
        with pytest.raises(PayloadTooLarge) as too_big:
            api._call("POST", f"/v1/psi/sessions/{session['session']}/chunks", content=body)
        assert "psi.chunk_items" in str(too_big.value)
    with Client(server.url, tokens["operator2"]) as other, pytest.raises(PolicyRefusal) as exc:
        other.psi("firms", "code", [firm_code(i) for i in range(200)])
    assert exc.value.article == "Art. 14"
    for r in seen:
        check_envelope(r)


def test_cli_psi_runs_the_client_half_against_the_server(served, tmp_path):
    from sandbox.cli.app import main

    server, tokens = served
    items = tmp_path / "customers.csv"
    items.write_text("credit_code\n" + "".join(f"{firm_code(i)}\n" for i in range(1400, 1600)))
    result = CliRunner().invoke(
        main,
        [
            "--server",
            server.url,
            "psi",
            "--dataset",
            "firms",
            "--column",
            "code",
            "--items",
            str(items),
            "--as",
            tokens["operator"],
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"count": 100' in result.output and '"list_size": 200' in result.output
