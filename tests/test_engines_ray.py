"""PSI set-up shards and HE group-sum shares as Ray tasks equal the local-process results.

One local Ray cluster (2 CPUs) serves the module and is shut down at its end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import private_set_intersection.python as psi_lib
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import client_he, he
from sandbox.engines import ray_pool
from sandbox.he import Scheme
from sandbox.psi import SetupSpec, build_bundle
from tests.psi_helpers import firm_code

pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    ray_pool.connect(ray_pool.LOCAL)
    yield ray_pool.LOCAL
    ray_pool.shutdown()


def test_psi_setup_on_ray_equals_local_processes(cluster, tmp_path):
    items = [firm_code(i) for i in range(400)]
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"code": items}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    spec = SetupSpec("s", 1, "code", None, 0, "raw", 1e-9, 1000)
    serial, _ = build_bundle(key, spec, path, 1)
    local, _ = build_bundle(key, spec, path, 2)
    on_ray, meta = build_bundle(key, spec, path, 2, cluster)
    assert serial == local == on_ray and meta["items"] == 400


def _decrypt(ctx, answer: bytes) -> list[int]:
    import tenseal.sealapi as sa

    seal = ctx.seal_context().data
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "answer.bin"
        target.write_bytes(answer)
        ct = sa.Ciphertext()
        ct.load(seal, str(target))
    plain = sa.Plaintext()
    sa.Decryptor(seal, ctx.secret_key().data).decrypt(ct, plain)
    return sa.BatchEncoder(seal).decode_int64(plain)


def test_he_group_sums_on_ray_equal_local_processes(cluster, tmp_path):
    ctx = client_he.make_context("bfv")
    rng = np.random.default_rng(5)
    values = rng.integers(0, 100, 300).tolist()
    labels = rng.integers(0, 3, 300).astype(np.int32)
    labels[::50] = -1  # unmatched entries count in no group
    ciphertexts = client_he.encrypt_values(ctx, values, Scheme.BFV)
    public = client_he.public_context(ctx)
    answers = []
    for name, address in (("local", ""), ("ray", cluster)):
        work = tmp_path / name
        work.mkdir()
        answer, _ = he.evaluate(
            work, public, ciphertexts, labels, 3, Scheme.BFV, 2, 60.0, 4096, address
        )
        answers.append(_decrypt(ctx, answer)[:3])
    expected = [sum(v for v, g in zip(values, labels, strict=True) if g == k) for k in range(3)]
    assert answers[0] == answers[1] == expected
