"""The usage report's chart: drawn by matplotlib, titled and labelled from the report."""

from __future__ import annotations

import io
from datetime import date, timedelta

from PIL import Image

from sandbox.workflow import usage


def report(weeks: int = 3, operator: str = "operator", period: str = "2026-Q3") -> dict:
    rows = []
    for i in range(weeks):
        counts = {m: (i + 1) * (k + 1) for k, m in enumerate(usage.METRICS)}
        monday = date(2026, 6, 29) + timedelta(weeks=i)
        rows.append({"week": monday.isoformat(), **counts})
    return {
        "operator": operator,
        "period": period,
        "from": "2026-07-01T00:00:00+00:00",
        "until": "2026-10-01T00:00:00+00:00",
        "weeks": rows,
    }


def test_the_figure_is_titled_labelled_and_has_one_legend_entry_per_metric():
    data = report(operator="jining-analytics", period="2026-07")
    fig = usage.chart_figure(data)
    (ax,) = fig.axes
    assert "jining-analytics" in ax.get_title() and "2026-07" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == [w["week"] for w in data["weeks"]]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(usage.METRICS)
    # one bar per week and metric, as tall as its count
    heights = sorted(round(p.get_height()) for p in ax.patches)
    expected = sorted(w[m] for w in data["weeks"] for m in usage.METRICS)
    assert heights == expected


def test_a_single_metric_has_no_legend_and_the_period_falls_back_to_the_dates():
    data = report()
    del data["period"]
    ax = usage.chart_figure(data, ["jobs"]).axes[0]
    assert ax.get_legend() is None
    assert "2026-07-01 to 2026-10-01" in ax.get_title()


def test_the_png_opens_has_a_sensible_size_and_the_same_data_gives_the_same_bytes():
    data = report(weeks=14)
    png = usage.chart_png(data)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 600 <= width <= 3000 and 300 <= height <= 1000
        assert "Software" not in image.info
    assert usage.chart_png(data) == png
    assert usage.chart_png(report(weeks=13)) != png


def test_a_year_of_weeks_and_an_empty_report_draw():
    wide = usage.chart_png(report(weeks=53, period="2026"))
    empty = usage.chart_png(report(weeks=0))
    with Image.open(io.BytesIO(wide)) as big, Image.open(io.BytesIO(empty)) as small:
        assert big.size[0] > small.size[0]
    ax = usage.chart_figure(report(weeks=53)).axes[0]
    assert 1 < len(ax.get_xticklabels()) <= 27


def test_a_chinese_operator_name_draws():
    png = usage.chart_png(report(operator="济宁数据运营"))
    assert png.startswith(b"\x89PNG")
