"""A synthetic loan book of Jining's enterprises with a plausible default label, for the
credit-model demonstration (issue 22).

Drawn from the demo tables (:mod:`sandbox.demo.data`), so the label depends on what the
public data shows: an enterprise defaults more often when it is closed or revoked, has
months of utility arrears, few insured staff, little capital and small bills; plus
noise, so no feature gives the label away. One row per enterprise that borrowed (about
seven in ten): ``credit_code``, ``loan_amount``, ``defaulted`` (0 or 1). The provider in
the walkthrough is the city's credit information platform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

CLASSIFICATION = Path(__file__).with_name("classifications") / "loans.yaml"


def _per_firm(codes: pa.Array, keys: pa.Array, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` per enterprise (0 where it has no row)."""
    index = pc.fill_null(pc.index_in(keys, value_set=codes), -1).to_numpy()
    found = index >= 0
    out = np.zeros(len(codes))
    np.add.at(out, index[found], values[found])
    return out


def loan_book(tables: dict[str, pa.Table], seed: int = 11) -> pa.Table:
    """The loan book drawn from ``enterprises``, ``utility_payments`` and ``social_insurance``."""
    rng = np.random.default_rng(seed)
    firms = tables["enterprises"]
    codes = firms.column("credit_code").combine_chunks().cast(pa.string())
    n = len(codes)
    capital = firms.column("registered_capital").to_numpy().astype(float)
    closed = pc.not_equal(firms.column("status"), "存续").to_numpy(zero_copy_only=False)
    bills = tables["utility_payments"]
    arrears = _per_firm(
        codes,
        bills.column("payer_id").combine_chunks().cast(pa.string()),
        bills.column("in_arrears").to_numpy(zero_copy_only=False).astype(float),
    )
    spend = _per_firm(
        codes,
        bills.column("payer_id").combine_chunks().cast(pa.string()),
        bills.column("amount").to_numpy(zero_copy_only=False).astype(float),
    )
    insured = tables["social_insurance"]
    staff_months = _per_firm(
        codes,
        insured.column("credit_code").combine_chunks().cast(pa.string()),
        np.ones(insured.num_rows),
    )
    z = (
        -2.3
        + 1.8 * closed
        + 0.45 * np.minimum(arrears, 6)
        - 0.35 * np.log1p(staff_months / 12)
        - 0.25 * (np.log1p(capital) - 13)
        - 0.15 * (np.log1p(spend) - 8)
        + rng.normal(0, 0.6, n)
    )
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    borrowed = rng.random(n) < 0.7
    amount = np.round(np.clip(capital * rng.uniform(0.1, 0.6, n), 50_000, 5_000_000), -3)
    keep = np.flatnonzero(borrowed)
    return pa.table(
        {
            "credit_code": codes.take(pa.array(keep)),
            "loan_amount": pa.array(amount[keep]),
            "defaulted": pa.array(defaulted[keep]),
        }
    )


def write_loan_book(data_dir: Path, seed: int = 11) -> Path:
    """Read the demo CSVs of ``data_dir`` (``sandbox demo-data``), write ``loans.csv``."""
    data_dir = Path(data_dir)
    options = pacsv.ConvertOptions(
        column_types={"credit_code": pa.string(), "payer_id": pa.string(), "pid": pa.string()}
    )
    tables = {
        name: pacsv.read_csv(data_dir / f"{name}.csv", convert_options=options)
        for name in ("enterprises", "utility_payments", "social_insurance")
    }
    path = data_dir / "loans.csv"
    pacsv.write_csv(loan_book(tables, seed), path)
    return path
