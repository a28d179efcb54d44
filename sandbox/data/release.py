"""Products: the only files that ever leave the platform, each with a signed manifest.

A product folder holds ``output.parquet`` and ``output.csv`` (the released
table: evidence dropped, suppressed cells empty, whole numbers as integers, a
``<measure>_flag`` column after each measure, see :mod:`sandbox.data.product_table`;
the CSV is UTF-8 with a byte order mark, and a text value or column name that a
spreadsheet would run as a formula is escaped in it, see :func:`csv_safe`),
``report.json`` (the output check as the operator reads it: suppressed cells
without their reasons, and a ``csv`` note of the escaping), ``report.html`` and
``report.md`` (the same for people, with ``chart.svg`` where a chart helps, see
:mod:`sandbox.data.product_report`), ``datapackage.json`` (a Frictionless Data
Package of every file and column, :mod:`sandbox.data.datapackage`),
``manifest.json`` (job, SQL, datasets with version and SHA-256, grants, rules and
parameters, verdict, and the SHA-256 of every other file) and ``manifest.sig``
(the platform's Ed25519 signature over the manifest's bytes).

A product is written in a private work folder (:func:`write_files`, before the
store's write lock is taken: rendering the reports takes tenths of a second) and
renamed into ``products/<id>`` in one step (:func:`place_product`, inside the
release transaction), so no half product is ever visible; the store
row and its ledger entry follow in that transaction, and a folder the store
does not know (a crash between the two) is removed when the platform opens
(the placement intent of :mod:`sandbox.core.storage`). A full disk fails the
release with ``disk_full`` and keeps nothing of it.
:func:`verify_product` checks the signature and every file's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.errors import IntegrityError
from sandbox.core import keys, storage
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.storage import sha256_file as _sha256
from sandbox.core.store import products
from sandbox.data.datapackage import datapackage
from sandbox.data.product_report import write_reports
from sandbox.data.product_table import csv_bytes, integer_types, measures_in, with_flags

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# Every product has these; ``chart.svg`` too where a chart helps.
PRODUCT_FILES = (
    "output.parquet",
    "output.csv",
    "report.json",
    "report.html",
    "report.md",
    "datapackage.json",
)


# A spreadsheet reads a cell that begins with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_ESCAPING = {
    "formula_escaping": "owasp",
    "rule": (
        "in output.csv only, a text value or column name that begins with =, +, -, @, a tab "
        "or a carriage return is written with a single quote (') in front, and every text "
        "value and column name is enclosed in double quotes; numbers are written as they "
        "are. output.parquet holds the exact values and names."
    ),
    "encoding": "UTF-8 with a byte order mark, so that spreadsheets read it as UTF-8",
}


# report.json keeps the job view's numbering (tests and tools read it); the reports for
# people count as a spreadsheet's reader does.
ROW_NUMBERS = (
    "suppressed_cells[].row counts the table's data rows from 0; report.html and "
    "report.md count them from 1 (row 1 is the first line under the header)"
)


def _escape(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_safe(table: pa.Table) -> tuple[pa.Table, int]:
    """The table as output.csv shows it, and how many values and names were escaped.

    OWASP's advice against CSV (formula) injection: a dimension value such as
    ``=HYPERLINK(...)``, or an alias the operator chose, would otherwise run as a
    formula when the product is opened in a spreadsheet. Only text columns and the
    header change; a negative number in a numeric column stays a number. The
    writer quotes every text field (pyarrow's ``needed`` quoting style does so for
    all strings) and doubles any quote inside one.
    """
    escaped = 0
    names = []
    for name in table.column_names:
        safe = _escape(name)
        escaped += safe != name
        names.append(safe)
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type):
            column = column.cast(kind.value_type)
            kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values = column.to_pylist()
            cleaned = [v if v is None else _escape(v) for v in values]
            escaped += sum(1 for a, b in zip(values, cleaned, strict=True) if a != b)
            column = pa.array(cleaned, type=kind)
        columns.append(column)
    return pa.table(columns, names=names), escaped


@dataclass
class Written:
    """A product written and signed in a private work folder, not placed yet
    (:func:`write_files`); ``inputs`` are the table, report and manifest fields it was
    written from."""

    product_id: str
    work: Path
    manifest: dict
    body: bytes
    inputs: tuple[pa.Table, Mapping[str, Any], Mapping[str, Any]]

    def matches(
        self, table: pa.Table, report: Mapping[str, Any], manifest_fields: Mapping[str, Any]
    ) -> bool:
        """Whether these would write the same files (the manifest's time aside)."""
        table0, report0, fields0 = self.inputs

        def timeless(fields: Mapping[str, Any]) -> dict:
            return {k: v for k, v in fields.items() if k != "created_at"}

        return (
            table.equals(table0, check_metadata=True)
            and dict(report) == dict(report0)
            and timeless(manifest_fields) == timeless(fields0)
        )

    def discard(self) -> None:
        """Remove the work folder (nothing, once the product was placed)."""
        shutil.rmtree(self.work, ignore_errors=True)


def write_files(
    platform: Platform,
    product_id: str,
    table: pa.Table,
    report: Mapping[str, Any],
    manifest_fields: Mapping[str, Any],
) -> Written:
    """Write and sign a product in a work folder; no store, no lock (:func:`place_product`
    places it). A full disk fails with ``disk_full`` and leaves nothing."""
    work = platform.work_dir()
    try:
        storage.fault_point("release.write")
        manifest, body = _write_files(platform, work, product_id, table, report, manifest_fields)
        storage.fault_point("release.written")
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, Exception) and storage.is_disk_full(exc):
            raise storage.disk_full(f"product {product_id}") from exc
        raise
    inputs = (table, dict(report), dict(manifest_fields))
    return Written(product_id, work, manifest, body, inputs)


def place_product(platform: Platform, conn, written: Written, *, job_id: int, operator) -> Path:
    """Place a written product and record it in the caller's transaction.

    The folder is renamed into place before the caller's transaction commits; if
    the commit fails the caller removes it, and if the process dies first the
    placement intent left in ``tmp/`` has it removed when the platform opens.
    """
    product_id, manifest = written.product_id, written.manifest
    try:
        target = platform.home / "products" / product_id
        intent = storage.intend(platform.home, Path("products") / product_id)
        os.replace(written.work, target)
        storage.settle_on_commit(conn, intent)
        storage.fault_point("release.placed")
    except BaseException as exc:
        written.discard()
        if isinstance(exc, Exception) and storage.is_disk_full(exc):
            raise storage.disk_full(f"product {product_id}") from exc
        raise
    manifest_sha = hashlib.sha256(written.body).hexdigest()
    conn.execute(
        products.insert().values(
            id=product_id,
            job_id=job_id,
            operator_id=operator.id,
            path=str(Path("products") / product_id),
            manifest_sha256=manifest_sha,
            verdict=manifest.get("verdict", ""),
            created_at=manifest["created_at"],
        )
    )
    platform.record(
        conn,
        operator.actor,
        "product.release",
        f"product:{product_id}",
        {
            "job": job_id,
            "manifest_sha256": manifest_sha,
            "files": {k: v["sha256"] for k, v in manifest["files"].items()},
        },
        "Art. 15",
    )
    return target


def _write_files(
    platform: Platform,
    work: Path,
    product_id: str,
    table: pa.Table,
    report: Mapping[str, Any],
    manifest_fields: Mapping[str, Any],
) -> tuple[dict, bytes]:
    """The product's files in ``work``: the table as Parquet and as escaped CSV, the
    reports, the data package, the manifest of every file's hash, and its signature."""
    measures = measures_in(table, manifest_fields, report)
    plain = integer_types(table)
    table = with_flags(plain, manifest_fields, report)
    flags = set(table.column_names) - set(plain.column_names)
    pq.write_table(table, work / "output.parquet")
    csv_table, escaped = csv_safe(table)
    (work / "output.csv").write_bytes(csv_bytes(csv_table))
    csv_note = {**CSV_ESCAPING, "escaped_cells": escaped}
    shown = {**report, "csv": csv_note, "row_numbers": ROW_NUMBERS}
    (work / "report.json").write_bytes(
        json.dumps(shown, indent=2, ensure_ascii=False, default=str).encode()
    )
    manifest = {
        "product": product_id,
        "created_at": now_utc(),
        "platform": "jining-sandbox",
        **manifest_fields,
        "csv": csv_note,
    }
    written = ["output.parquet", "output.csv", "report.json"]
    written += write_reports(work, product_id, table, report, manifest, measures)
    package = datapackage(product_id, table, csv_table.column_names, written, flags, manifest)
    (work / "datapackage.json").write_bytes(
        json.dumps(package, indent=2, ensure_ascii=False, default=str).encode()
    )
    written.append("datapackage.json")
    manifest["files"] = {
        name: {"sha256": _sha256(work / name), "bytes": (work / name).stat().st_size}
        for name in written
    }
    body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=str).encode()
    (work / MANIFEST).write_bytes(body)
    (work / SIGNATURE).write_text(keys.sign(platform.key, body) + "\n")
    return manifest, body


def verify_product(folder: Path, public: Ed25519PublicKey) -> dict:
    """Check the manifest's signature and every file's hash; return the manifest."""
    folder = Path(folder)
    try:
        body = (folder / MANIFEST).read_bytes()
        signature = (folder / SIGNATURE).read_text().strip()
    except FileNotFoundError as exc:
        raise IntegrityError(
            f"product {folder.name}: {Path(exc.filename).name} is missing"
        ) from None
    keys.verify(public, body, signature, f"product {folder.name}: {MANIFEST} and {SIGNATURE}")
    manifest = json.loads(body)
    for name, meta in manifest.get("files", {}).items():
        path = folder / name
        if not path.exists():
            raise IntegrityError(f"product {folder.name}: file {name} is missing")
        if _sha256(path) != meta["sha256"]:
            raise IntegrityError(f"product {folder.name}: file {name} was changed after release")
    extra = sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in set(manifest.get("files", {})) | {MANIFEST, SIGNATURE}
    )
    if extra:
        raise IntegrityError(f"product {folder.name}: file {extra[0]} is not in the manifest")
    return manifest
