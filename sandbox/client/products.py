"""Products and the ledger in the Python client (issue 26): lists, downloads, and a
product as a table.

``client.product(id)`` is a :class:`ProductHandle`: ``to_arrow()`` and ``to_pandas()``
read the released table (``output.parquet``) after checking it against the signed
manifest with the platform's public key (``GET /v1/keys/platform``, or the key you
pass), so a table changed on its way is refused, not read. A handle fetches the
product once, as its zip (one request, one ``product.download`` entry in the ledger,
as any download is), and answers every method from that.

    with Client(API, OPERATOR) as api:
        frame = api.product(job.product).to_pandas()
        frame[frame.n_flag.isna()]  # the cells released as they are
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from policies.errors import IntegrityError
from sandbox.api.models import LedgerEntry, LedgerVerification, Product

if TYPE_CHECKING:
    import pyarrow
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TABLE = "output.parquet"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"  # as sandbox.data.release names them


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header (:mod:`sandbox.api.paging`), or None."""
    for part in (header or "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and target.strip().startswith("<"):
            return target.strip()[1:-1]
    return None


class ProductHandle:
    """One released product over the API; nothing is fetched until a method asks."""

    def __init__(self, calls: ProductCalls, product_id: str, public_key: Any = None):
        self._calls = calls
        self.id = product_id
        self._public = public_key
        self._files: dict[str, bytes] | None = None  # fetched once per handle
        self._manifest: dict | None = None  # checked once per handle

    def __repr__(self) -> str:
        return f"ProductHandle({self.id!r})"

    def _fetched(self) -> dict[str, bytes]:
        """The product's files by name, from its zip (``GET /v1/products/{id}/zip``),
        fetched on first use: one request and one ledger entry for the handle."""
        if self._files is None:
            data = self._calls._call("GET", f"/v1/products/{self.id}/zip").content
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                self._files = {PurePosixPath(n).name: archive.read(n) for n in archive.namelist()}
        return self._files

    def manifest(self) -> dict:
        """The signed manifest, checked here with the platform's key.

        Example: ``api.product("prod-000001").manifest()["files"]``
        """
        from sandbox.core.keys import verify

        if self._manifest is not None:
            return self._manifest
        files = self._fetched()
        if MANIFEST not in files or SIGNATURE not in files:
            raise IntegrityError(f"product {self.id}: the zip holds no {MANIFEST} or {SIGNATURE}")
        public = self._public or self._calls.platform_key()
        body = files[MANIFEST]
        verify(public, body, files[SIGNATURE].decode().strip(), f"product {self.id}: {MANIFEST}")
        self._manifest = json.loads(body)
        return self._manifest

    def file(self, name: str) -> bytes:
        """One file's bytes, refused unless its SHA-256 is the signed manifest's.

        Example: ``api.product("prod-000001").file("report.md").decode()``
        """
        listed = self.manifest().get("files", {})
        if name not in listed:
            raise IntegrityError(f"product {self.id}: {name} is not in the signed manifest")
        data = self._fetched().get(name)
        if data is None or hashlib.sha256(data).hexdigest() != listed[name]["sha256"]:
            raise IntegrityError(f"product {self.id}: {name} does not match the signed manifest")
        return data

    def to_arrow(self) -> pyarrow.Table:
        """The released table as a :class:`pyarrow.Table` (with its ``<measure>_flag`` columns).

        Example: ``api.product("prod-000001").to_arrow().column("n").to_pylist()``
        """
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.file(TABLE)))

    def to_pandas(self) -> Any:  # a pandas.DataFrame (pandas ships no type stubs here)
        """The released table as a pandas DataFrame; integers stay integers (``Int64``,
        a suppressed cell is ``<NA>``) and text is ``string``. Needs pandas.

        Example: ``api.product("prod-000001").to_pandas().set_index("county")``
        """
        import importlib

        try:
            pd = importlib.import_module("pandas")  # untyped here: no pandas stubs installed
        except ImportError:  # pragma: no cover - pandas comes with the spark extra
            raise ImportError("to_pandas needs pandas: pip install pandas") from None
        import pyarrow as pa

        types = {
            pa.int8(): pd.Int8Dtype(),
            pa.int16(): pd.Int16Dtype(),
            pa.int32(): pd.Int32Dtype(),
            pa.int64(): pd.Int64Dtype(),
            pa.string(): pd.StringDtype(),
            pa.bool_(): pd.BooleanDtype(),
        }
        return self.to_arrow().to_pandas(types_mapper=types.get)

    def download(self, out: Path | str) -> Path:
        """The whole product as ``<out>/<id>.zip`` (verify it with ``sandbox product verify``).

        Example: ``api.product("prod-000001").download("my-products")``
        """
        return self._calls.download_zip(self.id, out)


class ProductCalls:
    """The product and ledger routes; mixed into :class:`sandbox.client.Client`."""

    _platform_key: Ed25519PublicKey | None = None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # pragma: no cover
        raise NotImplementedError

    def platform_key(self) -> Ed25519PublicKey:
        """The platform's public key (``GET /v1/keys/platform``), fetched once per client.

        Example: ``sandbox.core.keys.fingerprint(api.platform_key())``
        """
        if self._platform_key is None:
            from sandbox.core.keys import parse_public

            body = self._json("GET", "/v1/keys/platform")
            self._platform_key = parse_public(body["pem"].encode(), "the platform's key")
        return self._platform_key

    def product(self, product_id: str, *, public_key: Any = None) -> ProductHandle:
        """A released product as a handle: ``to_arrow()``, ``to_pandas()``, ``file(name)``,
        ``manifest()``, ``download(out)``. ``public_key``: check against this key instead
        of the one the server gives (a key you hold from elsewhere).

        Example: ``api.product(job.product).to_pandas()``
        """
        return ProductHandle(self, product_id, public_key)

    def _paged(
        self, path: str, page_size: int, filters: dict[str, Any] | None = None
    ) -> Iterator[Any]:
        """Every row of a paged list, one page (``limit``) at a time, by its next links."""
        given = {k: v for k, v in (filters or {}).items() if v is not None}
        target: str | None = f"{path}?{urlencode({**given, 'limit': int(page_size)})}"
        while target is not None:
            response = self._call("GET", target)
            yield from response.json()
            target = next_link(response.headers.get("link"))

    def iter_products(self, page_size: int = 100) -> Iterator[Product]:
        """The products you may download, fetched a page at a time.

        Example: ``for p in api.iter_products(page_size=50): print(p.id)``
        """
        for row in self._paged("/v1/products", page_size):
            yield Product.model_validate(row)

    def list_products(self) -> list[Product]:
        """The products you may download now.

        Example: ``[p.id for p in api.list_products()]``
        """
        return [Product.model_validate(p) for p in self._json("GET", "/v1/products")]

    def product_manifest(self, product_id: str) -> dict[str, Any]:
        """The product's manifest as the server verified it (no check here; see
        :meth:`ProductHandle.manifest` for one).

        Example: ``api.product_manifest(job.product)["datasets"]``
        """
        return self._json("GET", f"/v1/products/{product_id}")

    def download_file(self, product_id: str, name: str, out: Path | str) -> Path:
        """Save one file of a product into folder ``out``; returns its path.

        Example: ``api.download_file(job.product, "output.csv", "my-products")``
        """
        response = self._call("GET", f"/v1/products/{product_id}/files/{name}")
        target = Path(out) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
        return target

    def download_zip(self, product_id: str, out: Path | str) -> Path:
        """Save the product as ``<out>/<product_id>.zip``; returns its path.

        Example: ``api.download_zip(job.product, "my-products")``
        """
        response = self._call("GET", f"/v1/products/{product_id}/zip")
        target = Path(out) / f"{product_id}.zip"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
        return target

    def ledger(
        self,
        *,
        actor: str | None = None,
        subject: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        """Ledger entries (auditors, the authority), filtered by any of the arguments.

        Example: ``api.ledger(action="product.download", limit=50)``
        """
        given = dict(actor=actor, subject=subject, action=action, since=since, until=until)
        params = {k: v for k, v in {**given, "limit": limit}.items() if v is not None}
        entries = self._json("GET", "/v1/ledger", params=params)
        return [LedgerEntry.model_validate(e) for e in entries]

    def iter_ledger(
        self,
        *,
        actor: str | None = None,
        subject: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[LedgerEntry]:
        """Every ledger entry matching the filters, a page at a time (no 10,000 cap).

        Example: ``sum(1 for e in api.iter_ledger(action="product.download"))``
        """
        filters = dict(actor=actor, subject=subject, action=action, since=since, until=until)
        for row in self._paged("/v1/ledger", page_size, filters):
            yield LedgerEntry.model_validate(row)

    def verify_ledger(self) -> LedgerVerification:
        """The ledger's hash chain and signed checkpoints, checked by the server.

        Example: ``api.verify_ledger().entries``
        """
        return LedgerVerification.model_validate(self._json("GET", "/v1/ledger/verify"))
