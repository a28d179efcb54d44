"""Synthetic public data of Jining (济宁市) for demonstrations, tests and benchmarks.

No real person or enterprise is in these files: every value is drawn from
``numpy.random.default_rng(seed)``, so the same seed writes byte-identical CSV files
(the tests and the benchmarks rely on it). The distributions are chosen to make
disclosure control matter: incomes are log-normal with zeros, registered capital
and enterprises' utility bills are heavy-tailed (a few giants dominate their cells),
riders' trip counts are over-dispersed, and counties differ in size.

Identity numbers are valid: resident IDs (GB 11643) carry the area code of one of
Jining's eleven county-level divisions, credit codes (GB 32100) the same areas.

Tables (one CSV each; the provider's classification of each is a YAML file in
``sandbox/demo/classifications/``, listed in :data:`DEMO_TABLES`):

============================  =====================================================
persons                       one row per resident
enterprises                   one row per registered market entity
utility_payments              water, electricity, gas: 12 monthly bills of 2025 per account
social_insurance              monthly contributions of employed persons, with gaps
bus_trips                     about five card trips per person in 2025
============================  =====================================================
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from connectors.validity import CREDIT_ALPHABET, CREDIT_WEIGHTS, RESIDENT_WEIGHTS
from policies.classes import Classification

# County-level divisions of Jining: code, name, resident population in 10k (rounded).
COUNTIES = (
    ("370811", "任城区", 130),
    ("370812", "兖州区", 62),
    ("370826", "微山县", 58),
    ("370827", "鱼台县", 44),
    ("370828", "金乡县", 60),
    ("370829", "嘉祥县", 78),
    ("370830", "汶上县", 68),
    ("370831", "泗水县", 54),
    ("370832", "梁山县", 72),
    ("370881", "曲阜市", 62),
    ("370883", "邹城市", 112),
)

# GB/T 4754-2017 sections and their share of registered entities.
INDUSTRIES = (
    ("农、林、牧、渔业", 0.06),
    ("采矿业", 0.01),
    ("制造业", 0.14),
    ("电力、热力、燃气及水生产和供应业", 0.01),
    ("建筑业", 0.07),
    ("批发和零售业", 0.36),
    ("交通运输、仓储和邮政业", 0.04),
    ("住宿和餐饮业", 0.08),
    ("信息传输、软件和信息技术服务业", 0.03),
    ("金融业", 0.01),
    ("房地产业", 0.02),
    ("租赁和商务服务业", 0.06),
    ("科学研究和技术服务业", 0.03),
    ("居民服务、修理和其他服务业", 0.08),
)

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗孔孟颜曹田董袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍鹏辉建国志红丹宁海波文亮新利清飞斌"
BRAND = "鲁圣儒泰华鑫源宏盛金瑞恒通达利丰安康博兴运嘉祥圣"

REFERENCE_DAY = dt.date(2025, 12, 31)  # "today" of the data, fixed for determinism
YEAR = 2025
UTILITIES = ("water", "electricity", "gas")

CLASSIFICATION_DIR = Path(__file__).with_name("classifications")


@dataclass(frozen=True)
class DemoTable:
    """One demo table: its CSV file name and the provider's classification file."""

    name: str

    @property
    def file_name(self) -> str:
        return f"{self.name}.csv"

    @property
    def classification_path(self) -> Path:
        return CLASSIFICATION_DIR / f"{self.name}.yaml"

    @property
    def classification_yaml(self) -> str:
        return self.classification_path.read_text(encoding="utf-8")

    def classification(self) -> Classification:
        return Classification.from_dict(yaml.safe_load(self.classification_yaml))


DEMO_TABLES: dict[str, DemoTable] = {
    name: DemoTable(name)
    for name in ("persons", "enterprises", "utility_payments", "social_insurance", "bus_trips")
}


# --- identity numbers, vectorised ---------------------------------------------------------------


def _to_strings(codes: np.ndarray) -> pa.Array:
    """An (n, k) uint8 array of ASCII codes as a pyarrow string array."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    fixed = codes.view(f"S{codes.shape[1]}").ravel()
    return pa.array(fixed, type=pa.binary()).cast(pa.string())


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n,) non-negative ints -> (n, width) decimal digits, most significant first."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers) % 10


def _resident_ids(area: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> pa.Array:
    """Valid GB 11643 numbers from area codes (ints), birth dates (datetime64[D]), sequences."""
    years = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    months = birth.astype("datetime64[M]").astype(np.int64) % 12 + 1
    days = (birth - birth.astype("datetime64[M]")).astype(np.int64) + 1
    ymd = years * 10_000 + months * 100 + days
    digits = np.hstack([_digits(area, 6), _digits(ymd, 8), _digits(seq, 3)])
    check = np.frombuffer(b"10X98765432", dtype=np.uint8)[(digits @ RESIDENT_WEIGHTS) % 11]
    return _to_strings(np.hstack([digits + 48, check[:, None]]))


def _credit_codes(values: np.ndarray) -> pa.Array:
    """Valid GB 32100 codes from (n, 17) alphabet positions."""
    check = (31 - (values @ CREDIT_WEIGHTS) % 31) % 31
    alphabet = np.frombuffer(CREDIT_ALPHABET.encode(), dtype=np.uint8)
    return _to_strings(alphabet[np.hstack([values, check[:, None]])])


def _unique_ints(rng: np.random.Generator, n: int, high: int) -> np.ndarray:
    """n distinct ints in [0, high), in draw order (high must be far above n)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        draw = np.concatenate([out, rng.integers(0, high, size=n - out.size + 16)])
        _, first = np.unique(draw, return_index=True)
        out = draw[np.sort(first)]
    return out[:n]


def _concat(*parts: np.ndarray) -> np.ndarray:
    out = parts[0]
    for part in parts[1:]:
        out = np.char.add(out, part)
    return out


# --- tables -------------------------------------------------------------------------------------


def _persons(rng: np.random.Generator, n: int) -> tuple[pa.Table, dict]:
    # The draws happen in a fixed order (the data is the same for the same seed).
    weights = np.array([c[2] for c in COUNTIES], dtype=float)
    county = rng.choice(len(COUNTIES), size=n, p=weights / weights.sum())
    male = rng.random(n) < 0.507
    age_days = np.clip(rng.normal(42, 21, n), 0, 99) * 365.25 + rng.integers(0, 365, n)
    birth = np.datetime64(REFERENCE_DAY, "D") - age_days.astype(np.int64)
    age = (np.datetime64(REFERENCE_DAY, "D") - birth).astype(np.int64) / 365.25
    seq = _sequence_numbers(rng, county, birth, male)
    codes = np.array([int(c[0]) for c in COUNTIES], dtype=np.int64)
    pid = _resident_ids(codes[county], birth, seq)
    name = _names(rng, n)
    household, hh_ids, hh_county_arr = _households(rng, county)
    working = (age >= 18) & (age < 63)
    income = _incomes(rng, age)
    county_names = np.array([c[1] for c in COUNTIES])
    table = pa.table(
        {
            "pid": pid,
            "name": pa.array(name),
            "sex": pa.array(np.where(male, "男", "女")),
            "birth_date": pa.array(birth.astype("datetime64[D]"), type=pa.date32()),
            "county": pa.array(county_names[county]),
            "household_id": pa.array(hh_ids[household]),
            "income": pa.array(income),
        }
    )
    info = {
        "county": county,
        "age": age,
        "income": income,
        "employed": working & (income > 0) & (rng.random(n) < 0.8),
        "household": household,
        "household_ids": hh_ids,
        "household_county": hh_county_arr,
    }
    return table, info


def _sequence_numbers(
    rng: np.random.Generator, county: np.ndarray, birth: np.ndarray, male: np.ndarray
) -> np.ndarray:
    """Sequence numbers: unique within (area, birth date, sex); odd for men, even for women."""
    n = len(county)
    key = (county.astype(np.int64) * 200_000 + birth.astype(np.int64) + 100_000) * 2 + male
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    base = rng.integers(0, 400, n)
    # the whole group counts up from its first member's random base, so no two collide
    first_base = np.empty(n, dtype=np.int64)
    first_base[order] = base[order][group_start]
    return ((first_base + rank) % 500) * 2 + male


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    surnames = np.array(list(SURNAMES))
    s_weights = 1.0 / np.arange(1, len(surnames) + 1) ** 0.8
    given = np.array(list(GIVEN) + [""])
    g_weights = np.r_[np.ones(len(GIVEN)), len(GIVEN) * 0.35 / 0.65]
    return _concat(
        surnames[rng.choice(len(surnames), n, p=s_weights / s_weights.sum())],
        given[rng.integers(0, len(GIVEN), n)],
        given[rng.choice(len(given), n, p=g_weights / g_weights.sum())],
    )


def _households(
    rng: np.random.Generator, county: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Households: consecutive persons of one county, sizes 1..6. Returns each person's
    household number, the household ids and each household's county."""
    n = len(county)
    by_county = np.argsort(county, kind="stable")
    sizes = rng.choice(np.arange(1, 7), size=n, p=[0.18, 0.28, 0.26, 0.16, 0.08, 0.04])
    hh_of_sorted = np.empty(n, dtype=np.int64)
    hh_county: list[int] = []
    next_hh = 0
    counts = np.bincount(county, minlength=len(COUNTIES))
    offset = 0
    for c, count in enumerate(counts):
        cum = np.cumsum(sizes[offset : offset + count])
        k = int(np.searchsorted(cum, count)) + 1
        hh_of_sorted[offset : offset + count] = next_hh + np.searchsorted(
            cum[:k], np.arange(count), side="right"
        )
        hh_county.extend([c] * k)
        next_hh += k
        offset += count
    household = np.empty(n, dtype=np.int64)
    household[by_county] = hh_of_sorted
    used = np.unique(household)
    household = np.searchsorted(used, household)  # renumber densely
    hh_county_arr = np.array(hh_county, dtype=np.int64)[used]
    hh_ids = _concat(
        np.array([c[0] for c in COUNTIES])[hh_county_arr],
        np.char.mod("H%07d", np.arange(used.size)),
    )
    return household, hh_ids, hh_county_arr


def _incomes(rng: np.random.Generator, age: np.ndarray) -> np.ndarray:
    n = len(age)
    income = np.round(np.exp(rng.normal(10.6, 0.75, n)))
    income *= np.where(age < 18, 0, np.where(age >= 63, 0.45, 1.0))
    income[rng.random(n) < 0.07] = 0
    top = rng.random(n) < 0.002
    income[top] *= rng.pareto(1.3, top.sum()) * 10 + 5
    return income.astype(np.int64)


def _enterprises(rng: np.random.Generator, n: int) -> tuple[pa.Table, dict]:
    weights = np.array([c[2] for c in COUNTIES], dtype=float) ** 1.3  # the city centre draws firms
    county = rng.choice(len(COUNTIES), size=n, p=weights / weights.sum())
    ind_p = np.array([w for _, w in INDUSTRIES])
    industry = rng.choice(len(INDUSTRIES), size=n, p=ind_p / ind_p.sum())
    kind = rng.choice(np.array([1, 2, 3]), size=n, p=[0.7, 0.25, 0.05])  # company, 个体, 合作社

    values = np.zeros((n, 17), dtype=np.int64)
    values[:, 0] = 9
    values[:, 1] = kind
    values[:, 2:8] = _digits(np.array([int(c[0]) for c in COUNTIES])[county], 6)
    org = _unique_ints(rng, n, 31**7)
    values[:, 8] = 21  # "M"
    values[:, 9] = 10  # "A": the prefix of organisation codes issued since 2015
    values[:, 10:17] = (org[:, None] // 31 ** np.arange(6, -1, -1)) % 31
    credit = _credit_codes(values)

    capital = np.exp(rng.normal(13.0, 1.5, n))
    capital[kind == 2] /= 20
    giants = rng.random(n) < 0.004
    capital[giants] *= 200 + rng.pareto(0.9, giants.sum()) * 500
    heavy = np.isin(industry, [1, 3, 9])  # mining, utilities, finance run large
    capital[heavy] *= 8
    capital = np.round(capital, -3).astype(np.int64) + 10_000

    brand = np.array(list(BRAND))
    suffix = np.array(["有限公司", "个体经营部", "专业合作社"])
    word = np.array(
        ["农业", "矿业", "制造", "能源", "建设", "商贸", "物流", "餐饮", "科技", "金融"]
        + ["置业", "商务", "技术", "服务"]
    )
    name = _concat(
        np.array(["济宁"] * n),
        brand[rng.integers(0, len(brand), n)],
        brand[rng.integers(0, len(brand), n)],
        word[industry],
        suffix[kind - 1],
    )
    status = rng.choice(np.array(["存续", "注销", "吊销"]), size=n, p=[0.86, 0.10, 0.04])
    age_days = np.minimum(rng.exponential(8 * 365.25, n), 45 * 365.25).astype(np.int64)
    founded = np.datetime64(REFERENCE_DAY, "D") - age_days

    table = pa.table(
        {
            "credit_code": credit,
            "name": pa.array(name),
            "industry": pa.array(np.array([i for i, _ in INDUSTRIES])[industry]),
            "county": pa.array(np.array([c[1] for c in COUNTIES])[county]),
            "registered_capital": pa.array(capital),
            "status": pa.array(status),
            "founded": pa.array(founded, type=pa.date32()),
        }
    )
    return table, {"county": county, "capital": capital, "status": status, "credit": credit}


def _months() -> np.ndarray:
    return np.arange(f"{YEAR}-01", f"{YEAR + 1}-01", dtype="datetime64[M]").astype("datetime64[D]")


def _utility_payments(rng: np.random.Generator, persons: dict, firms: dict) -> pa.Table:
    months = _months()
    month_idx = np.arange(12)
    season = {
        "water": 1 + 0.25 * np.sin((month_idx - 3) / 12 * 2 * np.pi),
        "electricity": 1 + 0.35 * np.cos((month_idx - 7) / 6 * 2 * np.pi),
        "gas": 1 + 0.9 * np.cos(month_idx / 12 * 2 * np.pi),
    }
    base = {"water": 35.0, "electricity": 90.0, "gas": 45.0}
    n_hh = persons["household_ids"].size
    n_firm = firms["capital"].size
    firm_scale = np.clip(firms["capital"] / 500_000, 0.05, None) ** 0.7
    closed = firms["status"] != "存续"
    county_names = np.array([c[1] for c in COUNTIES])

    parts = []
    for utility in UTILITIES:
        has_hh = rng.random(n_hh) < (0.65 if utility == "gas" else 1.0)
        has_firm = (rng.random(n_firm) < (0.4 if utility == "gas" else 0.97)) & ~closed
        hh = np.flatnonzero(has_hh)
        fi = np.flatnonzero(has_firm)
        level = np.r_[
            base[utility] * np.exp(rng.normal(0, 0.45, hh.size)),
            base[utility] * 30 * firm_scale[fi] * np.exp(rng.normal(0, 0.6, fi.size)),
        ]
        n_acc = level.size
        amount = (
            level[:, None] * season[utility][None, :] * np.exp(rng.normal(0, 0.15, (n_acc, 12)))
        )
        arrears_prone = rng.random(n_acc) < 0.05
        arrears = arrears_prone[:, None] & (rng.random((n_acc, 12)) < 0.5)
        account = np.char.mod(f"{utility[0].upper()}%08d", np.arange(n_acc))
        payer_ids = np.r_[persons["household_ids"][hh], np.asarray(firms["credit"])[fi]]
        county = np.r_[persons["household_county"][hh], firms["county"][fi]]
        kind = np.r_[np.full(hh.size, "household"), np.full(fi.size, "enterprise")]
        parts.append(
            pa.table(
                {
                    "account_id": pa.array(np.repeat(account, 12)),
                    "payer_kind": pa.array(np.repeat(kind, 12)),
                    "payer_id": pa.array(np.repeat(payer_ids, 12)),
                    "county": pa.array(np.repeat(county_names[county], 12)),
                    "utility": pa.array(np.full(n_acc * 12, utility)),
                    "month": pa.array(np.tile(months, n_acc), type=pa.date32()),
                    "amount": pa.array(np.round(amount.ravel(), 2)),
                    "in_arrears": pa.array(arrears.ravel()),
                }
            )
        )
    return pa.concat_tables(parts)


def _social_insurance(
    rng: np.random.Generator, pid: pa.Array, persons: dict, firms: dict
) -> pa.Table:
    workers = np.flatnonzero(persons["employed"])
    open_firms = np.flatnonzero(firms["status"] == "存续")
    pull = firms["capital"][open_firms].astype(float) ** 0.6
    employer = open_firms[rng.choice(open_firms.size, workers.size, p=pull / pull.sum())]
    start = np.where(rng.random(workers.size) < 0.12, rng.integers(1, 12, workers.size), 0)
    present = (np.arange(12)[None, :] >= start[:, None]) & (rng.random((workers.size, 12)) > 0.04)
    wage = np.clip(persons["income"][workers] / 12, 3_800, 26_000)
    contribution = np.round(wage[:, None] * 0.16 * np.ones((1, 12)), 2)
    rows, cols = np.nonzero(present)
    credit = firms["credit"].take(pa.array(employer[rows]))
    return pa.table(
        {
            "pid": pid.take(pa.array(workers[rows])),
            "credit_code": credit,
            "month": pa.array(_months()[cols], type=pa.date32()),
            "contribution": pa.array(contribution[rows, cols]),
        }
    )


def _bus_trips(rng: np.random.Generator, pid: pa.Array, persons: dict) -> pa.Table:
    n = len(pid)
    riders = np.flatnonzero(rng.random(n) < 0.6)
    # negative binomial: most riders take a few trips, a few commute daily
    rate = rng.gamma(0.6, 5 / 0.6 / 0.6, riders.size)
    trips = rng.poisson(rate)
    who = np.repeat(riders, trips)
    k = who.size
    card = np.char.mod("%016x", rng.integers(0, 2**63, riders.size, dtype=np.int64))
    card_of = np.repeat(card, trips)
    home = persons["county"][who]
    away = rng.random(k) < 0.08
    county = np.where(away, rng.integers(0, len(COUNTIES), k), home)
    day = rng.integers(0, 365, k)
    weekend = ((day + 2) % 7) >= 5  # day 0 is Wednesday 2025-01-01; 5, 6 are Sat, Sun
    day = np.where(weekend & (rng.random(k) < 0.4), (day + 2) % 365, day)
    trip_date = np.datetime64(f"{YEAR}-01-01", "D") + day
    line_no = np.minimum(rng.zipf(1.6, k), 60)
    line = np.char.add(np.char.mod("%d", line_no), "路")
    age = persons["age"][who]
    fare = np.where(age >= 65, 0.0, np.where(age < 18, 0.5, np.where(line_no > 30, 2.0, 1.0)))
    county_names = np.array([c[1] for c in COUNTIES])
    return pa.table(
        {
            "card_id": pa.array(card_of),
            "pid": pid.take(pa.array(who)),
            "county": pa.array(county_names[county]),
            "trip_date": pa.array(trip_date, type=pa.date32()),
            "line": pa.array(line),
            "fare": pa.array(fare),
        }
    )


def demo_tables(persons: int = 100_000, seed: int = 7) -> dict[str, pa.Table]:
    """The demo tables in memory, drawn in a fixed order from one generator."""
    if persons < 100:
        raise ValueError("the demo needs at least 100 persons")
    rng = np.random.default_rng(seed)
    person_table, person_info = _persons(rng, persons)
    firm_table, firm_info = _enterprises(rng, max(50, persons // 20))
    pid = person_table.column("pid").combine_chunks()
    return {
        "persons": person_table,
        "enterprises": firm_table,
        "utility_payments": _utility_payments(rng, person_info, firm_info),
        "social_insurance": _social_insurance(rng, pid, person_info, firm_info),
        "bus_trips": _bus_trips(rng, pid, person_info),
    }


def write_demo_data(out_dir: Path, persons: int = 100_000, seed: int = 7) -> dict[str, Path]:
    """Write the demo tables as CSV files into ``out_dir``; return table name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, table in demo_tables(persons, seed).items():
        path = out_dir / DEMO_TABLES[name].file_name
        pacsv.write_csv(table, path)
        paths[name] = path
    return paths
