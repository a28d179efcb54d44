"""Charts drawn on the server as SVG (matplotlib), with a title, axes and labels.

:func:`activity_svg` draws the ledger's activity per day and kind (the part of an
action before its first dot: ``job``, ``product``, ``agreement``, ...) as stacked bars;
:func:`columns_svg` one bar per column of a dataset (its null rate, from the profile).
Drawing takes the matplotlib lock of :mod:`sandbox.workflow.usage` (its rcParams are
global) and its fonts, so Chinese labels draw where a CJK font is installed.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from sandbox.workflow.usage import DRAWING, font_families

SIZE = (9.0, 3.6)  # inches
MAX_KINDS = 8  # more kinds are drawn together as "other"


def kind_of(action: str) -> str:
    return action.split(".", 1)[0]


def per_day_and_kind(
    entries: Iterable[Mapping[str, Any]], first: date, last: date
) -> tuple[list[date], dict[str, list[int]]]:
    """Counts per day (every day from ``first`` to ``last``) for each kind, the most
    frequent kinds first; kinds past :data:`MAX_KINDS` are summed as ``other``."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    counts: dict[str, list[int]] = {}
    totals: Counter[str] = Counter()
    for entry in entries:
        day = date.fromisoformat(str(entry["ts"])[:10])
        if day not in index:
            continue
        kind = kind_of(str(entry["action"]))
        counts.setdefault(kind, [0] * len(days))[index[day]] += 1
        totals[kind] += 1
    ranked = [k for k, _ in totals.most_common()]
    kept = {k: counts[k] for k in ranked[:MAX_KINDS]}
    if len(ranked) > MAX_KINDS:
        kept["other"] = [sum(counts[k][i] for k in ranked[MAX_KINDS:]) for i in range(len(days))]
    return days, kept


@contextmanager
def _figure(size: tuple[float, float]) -> Iterator[Any]:
    """A figure drawn under the shared lock and fonts; yields (figure, axes)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with DRAWING, rc_context({"font.family": font_families(), "svg.hashsalt": "sandbox"}):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            fig = Figure(figsize=size, dpi=100, layout="constrained")
            yield fig, fig.add_subplot()


def _svg(fig: Any) -> bytes:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.BytesIO()
    FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def columns_svg(names: list[str], values: list[float], labels: Mapping[str, str]) -> bytes:
    """One horizontal bar per column (a quality figure such as the null rate, 0 to 1)."""
    height = max(2.0, 0.9 + 0.32 * len(names))
    with _figure((7.0, height)) as (fig, ax):
        ax.barh(range(len(names)), values, color="#1f5fa8")
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlim(0, max(1.0, max(values, default=0.0)))
        ax.set_title(labels["title"])
        ax.set_xlabel(labels["x"])
        ax.set_ylabel(labels["y"])
        return _svg(fig)


def activity_svg(
    days: list[date], series: Mapping[str, list[int]], labels: Mapping[str, str]
) -> bytes:
    """Stacked bars of entries per day and kind. ``labels`` holds the words ``title``,
    ``x``, ``y`` and ``empty`` in the reader's language."""
    from matplotlib.ticker import MaxNLocator

    with _figure(SIZE) as (fig, ax):
        x = list(range(len(days)))
        bottom = [0] * len(days)
        for kind, values in series.items():
            ax.bar(x, values, bottom=bottom, label=kind, width=0.8)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        if not series:
            ax.text(0.5, 0.5, labels["empty"], ha="center", va="center", transform=ax.transAxes)
        ax.set_title(labels["title"])
        ax.set_xlabel(labels["x"])
        ax.set_ylabel(labels["y"])
        step = max(1, len(days) // 15)
        ax.set_xticks(x[::step], [d.strftime("%m-%d") for d in days[::step]], rotation=45)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        if series:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        return _svg(fig)
