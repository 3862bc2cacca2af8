"""Admin: drift of each model's inputs and scores against its reference, as plots, with alarms.

The page runs the same check as ``kiosk drift`` (kiosk/lifecycle/drift.py): an alarm it finds is
audited once when raised. The plots are inline SVG drawn here from the bins, no script and
nothing fetched from the network (the kiosk runs offline).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from kiosk.errors import BundleError
from kiosk.lifecycle import drift
from web.security import requires
from web.services import services

bp = Blueprint("monitoring", __name__, url_prefix="/admin/monitoring")

#: Size of one plot (SVG user units) and its inner margin.
WIDTH, HEIGHT, MARGIN = 320, 120, 4


@dataclass(frozen=True)
class Bar:
    """One bin of a plot: where it lies and how tall the reference and recent bars are."""

    x: float
    width: float
    reference: float
    recent: float
    label: str


@dataclass(frozen=True)
class Plot:
    """One quantity's bars, its axis ends and its PSI."""

    name: str
    bars: list[Bar]
    low: str
    high: str
    psi: float | None
    n_recent: int


@bp.get("/")
@requires("admin")
def index() -> ResponseReturnValue:
    """Every loaded task's drift, its alarm, and the plots of each quantity."""
    svc = services()
    try:
        models = svc.pipeline.models
    except BundleError:  # no verified bundle at all: nothing to compare, the page says so
        models = {}
    bundles = {task: model.bundle for task, model in models.items()}
    found = drift.check(svc.store, bundles)
    return render_template(
        "monitoring.html",
        tasks=[(one, [plot(q) for q in one.quantities]) for one in found],
        alarms=[one for one in found if one.alarm],
        window=drift.WINDOW,
        first_cases=drift.FIRST_CASES,
    )


def plot(quantity: drift.Quantity) -> Plot:
    """Bars of the reference's and the window's shares of each bin (bins of equal width)."""
    shares = _shares(quantity.reference), _shares(quantity.recent)
    top = max([*shares[0], *shares[1], 1e-9])
    step = (WIDTH - 2 * MARGIN) / len(quantity.reference)
    bars = [Bar(MARGIN + i * step, step, (HEIGHT - 2 * MARGIN) * ref / top,
                (HEIGHT - 2 * MARGIN) * new / top, _bin_label(quantity.edges, i))
            for i, (ref, new) in enumerate(zip(*shares, strict=True))]
    return Plot(quantity.name, bars, _number(quantity.edges[0]), _number(quantity.edges[-1]),
                quantity.psi, sum(quantity.recent))


def _shares(counts: list[int]) -> list[float]:
    """Counts as shares of their total (zeros when there are none)."""
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _bin_label(edges: list[float], index: int) -> str:
    """A bin's range in numbers, e.g. "< 63.5", "63.5–93.7", "≥ 126.8"."""
    if index == 0:
        return f"< {_number(edges[0])}"
    if index == len(edges):
        return f"≥ {_number(edges[-1])}"
    return f"{_number(edges[index - 1])}–{_number(edges[index])}"


def _number(value: float) -> str:
    """A bin edge for people: three significant figures."""
    return f"{value:.3g}"
