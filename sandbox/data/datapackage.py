"""``datapackage.json``: the product as a Frictionless Data Package (issue 26).

Every file of the product is a resource; the two tables (``output.csv`` and
``output.parquet``) carry a Table Schema with every column and its type, so
Frictionless, pandas or R load the product directly. The CSV's column names are the
escaped ones it holds (see :func:`sandbox.data.release.csv_safe`); the Parquet's are
the exact names. A flag column's values are constrained to ``suppressed``, ``noised``
and ``rounded`` (empty when the release changed nothing). The package names no hash:
``manifest.json``, signed, holds every file's SHA-256 (the manifest and its
signature are not resources, as the manifest cannot list itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from sandbox.data.product_table import FLAGS

SPEC = "https://specs.frictionlessdata.io/data-package/"
MEDIA = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
    "html": "text/html",
    "md": "text/markdown",
    "svg": "image/svg+xml",
}
TITLES = {
    "output.csv": "The released table (CSV, UTF-8 with a byte order mark)",
    "output.parquet": "The released table (Parquet, exact values and names)",
    "report.json": "The output check as the operator reads it",
    "report.html": "The report for people",
    "report.md": "The report for people (Markdown)",
    "chart.svg": "The report's chart",
}


def field_type(kind: pa.DataType) -> str:
    """The Table Schema type of an Arrow type."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_timestamp(kind):
        return "datetime"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_time(kind):
        return "time"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return "any"


def _fields(table: pa.Table, names: Sequence[str], flags: set[str]) -> list[dict[str, Any]]:
    out = []
    for field, name in zip(table.schema, names, strict=True):
        entry: dict[str, Any] = {"name": name, "type": field_type(field.type)}
        if field.name in flags:
            entry["constraints"] = {"enum": list(FLAGS)}
        out.append(entry)
    return out


def datapackage(
    product_id: str,
    table: pa.Table,
    csv_names: Sequence[str],
    files: Sequence[str],
    flags: set[str],
    manifest: Mapping[str, Any],
) -> dict[str, Any]:
    """The package of one product: ``table`` as written to Parquet, ``csv_names`` its
    column names in the CSV, ``files`` the product's other file names."""
    resources: list[dict[str, Any]] = []
    for name in files:
        stem, _, ext = name.rpartition(".")
        resource: dict[str, Any] = {
            "name": f"{stem}-{ext}".lower(),
            "path": name,
            "title": TITLES.get(name, name),
            "format": ext,
            "mediatype": MEDIA.get(ext, "application/octet-stream"),
        }
        if ext == "csv":
            resource |= {
                "encoding": "utf-8",
                "dialect": {"header": True, "delimiter": ",", "quoteChar": '"'},
                "schema": {"fields": _fields(table, csv_names, flags), "missingValues": [""]},
            }
        elif ext == "parquet":
            # Frictionless reads Parquet through pandas, where an empty integer is NaN
            resource["schema"] = {
                "fields": _fields(table, table.column_names, flags),
                "missingValues": ["", "nan"],
            }
        else:
            # a file, not a table; "file" also keeps Frictionless from reading any
            # report.json as a validation report of its own
            resource["type"] = "text" if ext in ("html", "md") else "file"
            resource["encoding"] = "utf-8"
        resources.append(resource)
    job = manifest.get("job") or {}
    return {
        "profile": "data-package",
        "name": product_id.lower(),
        "title": f"Product {product_id}",
        "description": (
            "A table released by the Jining public-data sandbox after its output check. "
            "Each measure has a <measure>_flag column: suppressed (the value is empty), "
            "noised, rounded, or empty when the release did not change the value. "
            "manifest.json (signed in manifest.sig) holds every file's SHA-256."
        ),
        "created": manifest.get("created_at", ""),
        "sources": [
            {"title": f"{d['name']} version {d['version']}"} for d in manifest.get("datasets", [])
        ],
        "sandbox": {"job": job.get("id"), "kind": job.get("kind"), "spec": SPEC},
        "resources": resources,
    }
