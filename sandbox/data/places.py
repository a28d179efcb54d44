"""A county agreement reads only its county's rows (Art. 5, issue 20 item 3).

An agreement signed by a county authority has that county's jurisdiction, and so has
every grant made under it (:func:`sandbox.registry.jurisdiction.agreement_place`). A job
that reads a dataset under such a grant reads a *slice* of the dataset version: the rows
whose county column (the classification's ``county`` declaration,
:class:`policies.classes.CountyColumn`) holds that county's value, in the snapshot's row
order, written once per version and county under ``slices/`` in the platform home and
kept read-only. Every engine reads the slice where it would have read the snapshot:
the SQL worker, Spark and Ray, the DP mode, models, homomorphic sums and the
verification index. So the county's operator can neither see nor infer another county's
rows, whatever it asks: the rows are not in what the engine opens.

A dataset whose provider declared no county column cannot be cut, and one that declares
no value for the agreement's county has no rows of it that can be told apart: both are
refused (``county_scope``) rather than read whole. A grant made under a city agreement,
or directly by the city authority, reads the whole snapshot.

The slice keeps the version's number and sha256 (what the job's lineage names) and says
which county it is cut to (``county``), with the snapshot it was cut from (``source``):
the entity numbering and the audit across releases tell the slice from the whole.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from pathlib import Path

import duckdb
from sqlalchemy.engine import Connection

from policies.errors import PolicyRefusal
from sandbox.core.platform import Platform
from sandbox.data.vault import DatasetVersion
from sandbox.registry.jurisdiction import CITY, agreement_place

ARTICLE = "Art. 5"
FOLDER = "slices"


def scoped(
    conn: Connection, platform: Platform, version: DatasetVersion, agreement_id: int | None
) -> DatasetVersion:
    """``version`` as a job or product under ``agreement_id`` may read it: whole for a
    city agreement or a direct grant (no agreement: the city's), else its county's slice
    (written on first use); refused when it cannot be cut."""
    place = agreement_place(conn, agreement_id)
    return version if place == CITY else county_slice(platform, version, place)


def county_slice(platform: Platform, version: DatasetVersion, county: str) -> DatasetVersion:
    """The rows of ``version`` in ``county``, as a dataset version of their own."""
    column, value = require_cut(version, county)
    target = slice_path(platform, version, county)
    rows = _rows(target) if target.exists() else _write(platform, version, column, value, target)
    return replace(version, path=target, rows=rows, county=county, source=version.path)


def require_cut(version: DatasetVersion, county: str) -> tuple[str, str]:
    """The county column of ``version`` and its value for ``county``, or the refusal
    ``county_scope`` (asked again when a data request is filed, to say so early)."""
    declared = version.classification.county
    if declared is None:
        raise PolicyRefusal(
            "county_scope",
            f"the agreement is of county {county} and reads only that county's rows, but "
            f"the provider of '{version.dataset}' declared no county column, so its rows "
            f"cannot be cut to the county ({ARTICLE})",
            article=ARTICLE,
            subject=version.dataset,
            hint="the provider adds a 'county' declaration to the classification "
            "(column and codes); or the city authority signs the agreement",
        )
    value = declared.value_of(county)
    if value is None:
        raise PolicyRefusal(
            "county_scope",
            f"the agreement is of county {county}, and the provider of '{version.dataset}' "
            f"declared no value of column '{declared.column}' for that county ({ARTICLE})",
            article=ARTICLE,
            subject=version.dataset,
            hint="the provider adds the county's code to the classification's county codes",
        )
    return declared.column, value


def slice_path(platform: Platform, version: DatasetVersion, county: str) -> Path:
    name = f"{version.dataset}.v{version.version}.{version.sha256[:16]}.{county}.parquet"
    return platform.home / FOLDER / name


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write(
    platform: Platform, version: DatasetVersion, column: str, value: str, target: Path
) -> int:
    """Cut the slice in row order and write it read-only (a part file first, so a crash
    or a second writer never leaves half a slice under the final name)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = target.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.part")
    con = duckdb.connect(":memory:", config={"threads": platform.settings.job.threads})
    try:
        con.execute(
            f"COPY (SELECT * FROM read_parquet({_text(str(version.path))}) "
            f"WHERE CAST({_ident(column)} AS VARCHAR) = {_text(value)}) "
            f"TO {_text(str(part))} (FORMAT parquet, COMPRESSION zstd)"
        )
    finally:
        con.close()
    os.chmod(part, 0o400)
    os.replace(part, target)
    return _rows(target)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)
