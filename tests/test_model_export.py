"""Export of a model file (issue 22): only a model that passed every check, under an active
agreement whose product kinds name ``model``, after an authority covering the agreement
approved; the export is a signed product like any other, and goes with its agreement."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import onnx
import pytest
from model_helpers import SOUND, World, copied_world, make_world, sign_agreement, trained_world
from sqlalchemy import select

from policies.errors import Conflict, IntegrityError, NotFound, PermissionDenied, PolicyRefusal
from sandbox.core import ledger, principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.data.products import fetch_product, list_products
from sandbox.data.release import verify_product
from sandbox.models import export, portable, service, services
from sandbox.models.tables import model_files
from sandbox.verification.keys import load_secret, normalise_key, subject_hash
from sandbox.workflow import agreements, deliveries

FEATURES = ["capital", "arrears_months", "staff", "bill_mean"]  # SOUND's, in its order


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> World:
    """One platform with the sound model trained: each test works on a copy of its home."""
    return trained_world(tmp_path_factory.mktemp("model_export"))


@pytest.fixture
def world(trained, tmp_path) -> World:
    w = copied_world(trained, tmp_path)
    yield w
    w.platform.close()


def _exported(w: World) -> str:
    assert export.request_export(w.platform, w.operator, "credit_tree")["state"] == "requested"
    out = export.approve_export(w.platform, w.city, "credit_tree")
    assert out["state"] == "approved"
    return out["product"]


def _rows(w: World, n: int = 12) -> tuple[list[str], np.ndarray]:
    codes = w.table.column("credit_code").to_pylist()[:n]
    x = np.column_stack([w.table.column(c).to_numpy()[:n] for c in FEATURES]).astype(float)
    return codes, x


def _inside(w: World, codes: list[str]) -> np.ndarray:
    """The scores the model gave these enterprises inside, kept by keyed hash."""
    with w.platform.store.read() as conn:
        model = service.model_row(conn, "credit_tree")
    kept = service.scores_of(w.platform, model.scores_path).to_pydict()
    by_hash = dict(zip(kept["subject_hash"], kept["score"], strict=True))
    secret = load_secret(w.platform.home / "keys")
    return np.array([by_hash[subject_hash(secret, (normalise_key(c),))] for c in codes])


def test_a_passed_model_under_an_agreement_that_allows_models_is_exported_after_approval(
    world, tmp_path
):
    w = world
    product = _exported(w)
    with w.platform.store.read() as conn:
        assert product in {p["id"] for p in list_products(conn, w.operator)}
        assert ledger.query(conn, action="model.export_requested")
        [approved] = ledger.query(conn, action="model.export_approved")
    assert approved["actor"] == "city" and approved["details"]["product"] == product
    folder = fetch_product(w.platform, w.operator, product, tmp_path / "out")
    manifest = verify_product(folder, w.platform.key.public_key())
    assert sorted(manifest["files"]) == ["card.json", "model.json", "model.onnx"]
    assert (manifest["kind"], manifest["verdict"], manifest["agreement"]) == (
        "model", "passed", w.agreement,
    )  # fmt: skip
    card = json.loads((folder / "card.json").read_text())
    description = json.loads((folder / "model.json").read_text())
    assert portable.model_sha256(description["model"]) == card["card"]["model_sha256"]
    assert description["features"] == ["capital", "arrears", "staff", "bills"]
    # the file gives the model's own answers: ONNX Runtime and the JSON loader alike
    codes, x = _rows(w)
    inside = _inside(w, codes)
    ort = pytest.importorskip("onnxruntime")
    onnx.checker.check_model(onnx.load(str(folder / "model.onnx")))
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    from_onnx = session.run(None, {"features": x})[0][:, 0]
    np.testing.assert_allclose(from_onnx, inside, atol=1e-6)
    np.testing.assert_allclose(portable.predict(description, x), inside, atol=1e-12)


def test_the_portable_forms_agree_with_every_algorithm():
    """The three algorithms, fitted as the worker fits them, give the estimator's own
    probabilities from model.json and model.onnx."""
    from model_helpers import credit_table

    from sandbox.models.fit import arrays_of, arrays_to_json, fit, outputs_of

    table = credit_table(1500)
    x = np.column_stack([table.column(c).to_numpy() for c in FEATURES]).astype(float)
    y = table.column("defaulted").to_numpy().astype(np.int64)
    ort = pytest.importorskip("onnxruntime")
    for algorithm, params in [
        ("decision_tree", {"max_depth": 4, "min_samples_leaf": 60}),
        ("logistic_regression", {"C": 1.0, "max_iter": 300}),
        ("gradient_boosting",
         {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.1, "min_samples_leaf": 60}),
    ]:  # fmt: skip
        model = fit(algorithm, params, 1, x, y)
        arrays = arrays_of(model, algorithm, y.size, x.shape[1])
        numbers = arrays_to_json(arrays, outputs_of(model, algorithm))
        card = {"name": "m", "algorithm": algorithm, "features": FEATURES, "label": "defaulted",
                "model_sha256": portable.model_sha256(numbers)}  # fmt: skip
        description = portable.describe(card, numbers)
        expected = model.predict_proba(x)[:, 1]
        np.testing.assert_allclose(portable.predict(description, x), expected, atol=1e-12)
        session = ort.InferenceSession(portable.to_onnx(description))
        got = session.run(None, {"features": x})[0][:, 0]
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=algorithm)


def test_a_changed_byte_of_the_export_is_caught(world, tmp_path):
    w = world
    product = _exported(w)
    folder = fetch_product(w.platform, w.operator, product, tmp_path / "out")
    onnx_file = folder / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.onnx was changed"):
        verify_product(folder, w.platform.key.public_key())
    # the manifest itself is signed: a new hash written into it breaks the signature
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["model.onnx"]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError):
        verify_product(folder, w.platform.key.public_key())


def test_a_model_that_failed_a_check_is_refused(world):
    """The platform's depth limit lowered below the tree's: the tree_depth check fails,
    the model is refused, and its export with it (Art. 15)."""
    w = world
    w.platform.close()
    (w.platform.home / "sandbox.toml").write_text("[model]\nmax_depth = 3\n")
    platform = Platform.open(w.platform.home)
    try:
        card = service.train(platform, w.operator, {**SOUND, "name": "too_deep"})["card"]
        assert card["verdict"] == "refused"
        with pytest.raises(PolicyRefusal) as refused:
            export.request_export(platform, w.operator, "too_deep")
        assert (refused.value.rule, refused.value.article) == ("model_not_passed", "Art. 15")
        assert "tree_depth" in refused.value.message
        with platform.store.read() as conn:  # a refused model keeps no numbers
            assert (
                conn.execute(select(model_files).where(model_files.c.name == "too_deep")).first()
                is None
            )
    finally:
        platform.close()


def test_an_agreement_without_the_model_product_kind_is_refused(world):
    """A second agreement, for reports only, ending later: a model trained under it
    cannot be exported (Art. 4), while the first agreement's model can."""
    w = world
    with w.platform.store.read() as conn:
        made = {n: principals.by_name(conn, n) for n in ("city", "bank", "provider", "r1", "r2")}
    reports_only = sign_agreement(w.platform, made, days=400, product_kinds=("report",))
    service.train(w.platform, w.operator, {**SOUND, "name": "report_tree"})
    assert service.show(w.platform, w.city, "report_tree")["state"] == "passed"
    with pytest.raises(PolicyRefusal) as refused:
        export.request_export(w.platform, w.operator, "report_tree")
    assert (refused.value.rule, refused.value.article) == ("product_kind_not_agreed", "Art. 4")
    assert f"agreement {reports_only}" in refused.value.message
    # the first agreement's model goes out, as that agreement's product
    product = _exported(w)
    with w.platform.store.read() as conn:
        [approved] = ledger.query(conn, action="model.export_approved")
    assert approved["details"]["agreement"] == w.agreement and product


def test_only_an_authority_covering_the_agreement_approves(world):
    w = world
    with pytest.raises(PermissionDenied):  # the operator asks; it cannot approve
        export.request_export(w.platform, w.city, "credit_tree")
    export.request_export(w.platform, w.operator, "credit_tree")
    with pytest.raises(Conflict):
        export.request_export(w.platform, w.operator, "credit_tree")
    with pytest.raises(PermissionDenied):
        export.approve_export(w.platform, w.operator, "credit_tree")
    with w.platform.store.transaction() as conn:
        county, _ = principals.insert(
            conn, "rencheng", principals.Role.AUTHORITY, "Rencheng", "370811", now_utc()
        )
        other, _ = principals.insert(
            conn, "bank2", principals.Role.OPERATOR, "Bank 2", None, now_utc()
        )
    with pytest.raises(PermissionDenied) as refused:
        export.approve_export(w.platform, county, "credit_tree")
    assert refused.value.article == "Art. 5"
    assert export.list_exports(w.platform, county) == []
    with pytest.raises(NotFound):  # another operator's model is no model of its own
        export.request_export(w.platform, other, "credit_tree")
    export.reject_export(w.platform, w.city, "credit_tree", reason="not needed outside")
    assert export.list_exports(w.platform, w.operator)[0]["state"] == "rejected"
    with w.platform.store.read() as conn:
        assert not list_products(conn, w.operator)
    export.request_export(w.platform, w.operator, "credit_tree")  # asked again
    assert export.approve_export(w.platform, w.city, "credit_tree")["state"] == "approved"


def test_a_suspended_agreement_exports_nothing(world):
    w = world
    export.request_export(w.platform, w.operator, "credit_tree")
    agreements.suspend(w.platform, w.city, w.agreement, reason="security incident")
    with pytest.raises(PolicyRefusal) as refused:
        export.approve_export(w.platform, w.city, "credit_tree")
    assert (refused.value.rule, refused.value.article) == ("agreement_not_active", "Art. 13")


def test_the_export_is_delivered_and_disposed_with_its_agreement(world, tmp_path):
    w = world
    product = _exported(w)
    deliveries.deliver(w.platform, w.operator, product, "lender", note="credit model")
    got = fetch_product(w.platform, w.consumer, product, tmp_path / "lender")
    verify_product(got, w.platform.key.public_key())
    agreements.suspend(w.platform, w.city, w.agreement, reason="breach")
    later = datetime.now(UTC) + timedelta(days=400)
    agreements.terminate(w.platform, w.city, w.agreement, reason="breach", now=later)
    assert services.dispose_ended(w.platform) == ["credit_tree"]
    assert not (w.platform.home / "products" / product).exists()
    with pytest.raises(NotFound, match="disposal clause"):
        fetch_product(w.platform, w.consumer, product, tmp_path / "again")
    assert export.list_exports(w.platform, w.city)[0]["state"] == "disposed"
    with w.platform.store.read() as conn:
        assert conn.execute(select(model_files)).first() is None
        assert ledger.query(conn, action="model.export_disposed")
        assert product not in {p["id"] for p in list_products(conn, w.city)}


def test_the_name_exports_is_reserved(world):
    with pytest.raises(Exception, match="reserved"):
        service.train(world.platform, world.operator, {**SOUND, "name": "exports"})


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from api_server import ApiServer

    root = tmp_path_factory.mktemp("model_export_cli")
    platform = Platform.init(root / "home")

    def make(name, role, *, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    w = make_world(platform, make, root / "data")
    platform.close()
    (root / "train.yaml").write_text(json.dumps(SOUND), encoding="utf-8")  # JSON is YAML
    with ApiServer(root / "home") as server:
        yield server, w, root


def test_export_through_the_cli_with_a_server_as_on_the_host(served):
    from click.testing import CliRunner

    from sandbox.cli.app import main
    from sandbox.client import Client

    server, w, root = served
    t = w.tokens
    no_env = {"SANDBOX_SERVER": None, "SANDBOX_TOKEN": None, "SANDBOX_TOKEN_FILE": None}

    def remote(token, *args):
        return CliRunner().invoke(main, ["--server", server.url, *args, "--as", token], env=no_env)

    def host(token, *args):
        return CliRunner().invoke(
            main, ["--home", str(server.home), *args, "--as", token], env=no_env
        )

    assert remote(t["bank"], "model", "train", "--file", str(root / "train.yaml")).exit_code == 0
    asked = remote(t["bank"], "model", "export", "credit_tree")
    assert "requested" in asked.stdout, asked.output
    wrong = remote(t["bank"], "model", "approve-export", "credit_tree")
    assert wrong.exit_code != 0 and "Traceback" not in wrong.output
    approved = remote(t["city"], "model", "approve-export", "credit_tree", "--json")
    assert approved.exit_code == 0, approved.output
    product = json.loads(approved.stdout)["product"]
    listed = json.loads(remote(t["bank"], "product", "list", "--json").stdout)
    assert product in [p["id"] for p in listed]
    got = remote(t["bank"], "product", "get", product, "--out", str(root / "got"))
    assert got.exit_code == 0, got.output
    folder = root / "got" / product
    verified = CliRunner().invoke(
        main, ["--server", server.url, "product", "verify", str(folder), "--json"], env=no_env
    )
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["files"] == ["card.json", "model.json", "model.onnx"]
    delivered = remote(t["bank"], "product", "deliver", product, "--to", "lender")
    assert delivered.exit_code == 0, delivered.output
    exports = json.loads(remote(t["auditor"], "model", "exports", "--json").stdout)
    assert exports == json.loads(host(t["auditor"], "model", "exports", "--json").stdout)
    assert [(e["name"], e["state"], e["product"]) for e in exports] == [
        ("credit_tree", "approved", product)
    ]
    with Client(server.url, t["lender"]) as api:
        assert product in [p.id for p in api.list_products()]
    # a model that is not there, and a refusal worded on one line with its article
    refused = remote(t["bank"], "model", "export", "credit_tree")
    assert refused.exit_code != 0 and "approved already" in refused.output
