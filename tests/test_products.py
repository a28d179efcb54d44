"""Released products: tamper evidence of the signed folder, download and who may download.

One product is released once per module by a real job; every tampering test
works on its own copy of the folder, so they can run in any order.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from policies.access import GrantStatus
from policies.classes import Classification
from policies.errors import Conflict, IntegrityError, NotFound, PolicyRefusal
from sandbox.core import ledger, principals
from sandbox.core.keys import load_public
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.data import vault
from sandbox.data.grants import add_grant, grants_of, set_grant_status
from sandbox.data.products import fetch_product, list_products
from sandbox.data.release import PRODUCT_FILES, verify_product
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from tests.conftest import DATA, PUMS_CLASSIFICATION

SQL = "SELECT sex, educ, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex, educ"


@dataclass
class Released:
    platform: Platform
    owner: Principal
    other: Principal
    consumer: Principal
    authority: Principal
    product_id: str

    @property
    def folder(self) -> Path:
        return self.platform.home / "products" / self.product_id

    @property
    def public(self):
        return load_public(self.platform.public_key_path)


def _principal(platform: Platform, name: str, role: Role, jurisdiction=None) -> Principal:
    with platform.store.transaction() as conn:
        principal, _ = principals.insert(conn, name, role, name, jurisdiction, ledger.now_utc())
    return principal


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Released:
    data = DATA / "pums_1000_pid.csv"
    platform = Platform.init(tmp_path_factory.mktemp("products") / "home")
    provider = _principal(platform, "bureau", Role.PROVIDER)
    authority = _principal(platform, "city", Role.AUTHORITY, "city")
    owner = _principal(platform, "bank", Role.OPERATOR)
    other = _principal(platform, "rival", Role.OPERATOR)
    consumer = _principal(platform, "citizen", Role.CONSUMER)
    classification = Classification.from_dict(PUMS_CLASSIFICATION)
    vault.register(platform, provider, "pums", str(data), classification)
    for name in ("bank", "rival"):
        add_grant(platform, authority, name, "pums", until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(owner, {"sql": SQL})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, outcome
    yield Released(platform, owner, other, consumer, authority, outcome.product_id)
    platform.close()


@pytest.fixture
def copy(released: Released, tmp_path: Path) -> Path:
    """A private copy of the released folder, to tamper with."""
    target = tmp_path / released.product_id
    shutil.copytree(released.folder, target)
    return target


def _flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_untouched_product_verifies(released: Released, copy: Path):
    manifest = verify_product(copy, released.public)
    assert manifest["product"] == released.product_id
    assert set(manifest["files"]) == set(PRODUCT_FILES) | {"chart.svg"}
    assert manifest["job"]["sql"]


@pytest.mark.parametrize("name", [*PRODUCT_FILES, "chart.svg"])
def test_one_changed_byte_of_a_file_is_found(released: Released, copy: Path, name: str):
    _flip_byte(copy / name, offset=len((copy / name).read_bytes()) // 2)
    with pytest.raises(IntegrityError, match=rf"{released.product_id}: file {name} was changed"):
        verify_product(copy, released.public)


def test_one_changed_byte_of_the_manifest_is_found(released: Released, copy: Path):
    body = (copy / "manifest.json").read_text()
    # change a value the manifest vouches for: the verdict's first letter
    changed = body.replace('"verdict": "released', '"verdict": "Released', 1)
    assert changed != body and len(changed) == len(body)
    (copy / "manifest.json").write_text(changed)
    with pytest.raises(IntegrityError, match=r"manifest\.json.*signature does not match"):
        verify_product(copy, released.public)


def test_a_manifest_rewritten_to_match_a_changed_file_is_found(released: Released, copy: Path):
    """Recomputing the hash inside the manifest does not help without the platform key."""
    import hashlib

    (copy / "output.csv").write_text('"sex","educ","n","total"\n1,9,999,1\n')
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["output.csv"]["sha256"] = hashlib.sha256(
        (copy / "output.csv").read_bytes()
    ).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(IntegrityError, match=r"manifest\.json"):
        verify_product(copy, released.public)


def test_another_key_does_not_verify(released: Released, copy: Path, tmp_path: Path):
    other = Platform.init(tmp_path / "other-home")
    try:
        with pytest.raises(IntegrityError, match="signature does not match"):
            verify_product(copy, load_public(other.public_key_path))
    finally:
        other.close()


@pytest.mark.parametrize(
    "name", ["output.csv", "report.json", "report.html", "manifest.json", "manifest.sig"]
)
def test_a_deleted_file_is_found(released: Released, copy: Path, name: str):
    (copy / name).unlink()
    with pytest.raises(IntegrityError, match=rf"{released.product_id}: (file )?{name} is missing"):
        verify_product(copy, released.public)


def test_an_added_file_is_found(released: Released, copy: Path):
    (copy / "extra.csv").write_text("sex,n\n1,3\n")
    with pytest.raises(IntegrityError, match=r"file extra\.csv is not in the manifest"):
        verify_product(copy, released.public)


def test_fetch_copies_a_verified_product_and_ledgers_the_download(
    released: Released, tmp_path: Path
):
    platform = released.platform
    with platform.store.read() as conn:
        before = ledger.query(conn, action="product.download")
    target = fetch_product(platform, released.owner, released.product_id, tmp_path / "out")
    assert target == tmp_path / "out" / released.product_id
    assert verify_product(target, released.public)["product"] == released.product_id
    assert sorted(p.name for p in target.iterdir()) == sorted(
        p.name for p in released.folder.iterdir()
    )
    with platform.store.read() as conn:
        after = ledger.query(conn, action="product.download")
        ledger.verify(conn, released.public)
    [entry] = after[len(before) :]
    assert entry["actor"] == "bank" and entry["role"] == "operator"
    assert entry["subject"] == f"product:{released.product_id}"
    assert entry["article"] == "Art. 15"
    with pytest.raises(Conflict):
        fetch_product(platform, released.owner, released.product_id, tmp_path / "out")


def test_the_authority_may_fetch_any_product(released: Released, tmp_path: Path):
    target = fetch_product(released.platform, released.authority, released.product_id, tmp_path)
    assert (target / "manifest.json").exists()


@pytest.mark.parametrize("who", ["other", "consumer"])
def test_others_cannot_fetch_or_see_the_product(released: Released, tmp_path: Path, who: str):
    viewer = getattr(released, who)
    # Another operator, and a consumer it was not delivered to (Art. 15), are told there
    # is no such product, as the API tells them (one check, readable_product).
    with pytest.raises(NotFound):
        fetch_product(released.platform, viewer, released.product_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with released.platform.store.read() as conn:
        assert list_products(conn, viewer) == []
        downloads = ledger.query(conn, action="product.download", actor=viewer.name)
    assert downloads == []


def test_the_owner_lists_its_product(released: Released):
    with released.platform.store.read() as conn:
        rows = list_products(conn, released.owner)
    assert [r["id"] for r in rows] == [released.product_id]


def test_a_product_tampered_in_the_platform_is_not_handed_out(released: Released, tmp_path):
    csv = released.folder / "output.csv"
    original = csv.read_bytes()
    try:
        _flip_byte(csv, offset=len(original) - 2)
        with released.platform.store.read() as conn:
            before = len(ledger.query(conn, action="product.download"))
        with pytest.raises(IntegrityError, match="output.csv"):
            fetch_product(released.platform, released.owner, released.product_id, tmp_path / "o")
        assert not (tmp_path / "o" / released.product_id).exists()
        with released.platform.store.read() as conn:
            assert len(ledger.query(conn, action="product.download")) == before
    finally:
        csv.write_bytes(original)
    verify_product(released.folder, released.public)


def test_a_suspended_grant_stops_the_owners_download(released: Released, tmp_path: Path):
    platform = released.platform
    with platform.store.read() as conn:
        [grant] = [g for g in grants_of(conn, released.owner.id)]
    set_grant_status(platform, released.authority, grant.id, GrantStatus.SUSPENDED, "inspection")
    try:
        with pytest.raises(PolicyRefusal) as err:
            fetch_product(platform, released.owner, released.product_id, tmp_path / "out")
        assert err.value.rule == "grant_suspended" and err.value.article == "Art. 24"
        assert not (tmp_path / "out").exists()
        # The authority still may (supervision, Art. 5).
        fetch_product(platform, released.authority, released.product_id, tmp_path / "auth")
    finally:
        set_grant_status(platform, released.authority, grant.id, GrantStatus.ACTIVE, "cleared")
    fetch_product(platform, released.owner, released.product_id, tmp_path / "again")
