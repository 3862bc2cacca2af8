"""Fleet metrics (issue 16.5): one kiosk's figures for a period, with no patient data in them.

What leaves is built here, as plain JSON, and kept in the store as it was queued (so a retry
sends the same report): per task and model version (id, version, bundle sha256) the number of
images read, their verdicts and a histogram of their scores, over the period's screenings (UTC
days, both ends included); the drift statistics and the surveillance figures as they stand when
the report is made (running figures, not the period's). Nothing else is read: no patient,
screening uid, image hash, DICOM UID, date finer than the period, or free text.

Small cells: a count from 1 to ``min_cell - 1`` is left out (None), and so is every figure it
could be worked back from: within each set of counts that adds up to a shown total, a lone
hidden cell hides the next smallest too (secondary suppression); a proportion is shown only when
its successes and failures are each 0 or at least ``min_cell``; a drift statistic only over at
least ``min_cell`` images. The rows of the drift and surveillance summaries are copied key by
key from a fixed list (``DRIFT_KEYS``, ``SURVEILLANCE_KEYS``), so a field added to them later
never leaves unnoticed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from kiosk.config import Config
from kiosk.errors import BundleError, StoreError
from kiosk.lifecycle import drift, surveillance
from kiosk.lifecycle.models import active_bundles
from kiosk.result import Result
from kiosk.store import FleetReport, Store
from kiosk.store import fleet as kept

UTC = timezone.utc
#: The version of the figures' layout (what kiosk/sync/measure_report.py reads).
SCHEMA = 1
VERDICTS = ("referable", "non_referable", "ungradable")
#: Score histogram: ten bins of width 0.1 over [0, 1] (1.0 falls in the last).
BINS = 10
#: What may leave of a drift summary row (kiosk.lifecycle.drift.summary), and of each quantity.
DRIFT_KEYS = ("task", "model_version", "n", "statistic", "value", "threshold", "alarm", "window")
QUANTITY_KEYS = ("name", "psi")
#: What may leave of a surveillance summary row (kiosk.lifecycle.surveillance.summary).
SURVEILLANCE_KEYS = ("task", "model_version", "model_sha256", "operating_point", "alarm",
                     "alarms")
#: Its counts that leave: the confusion counts (tp, fp, tn, fn) stay home, since any one of them
#: is the difference of two published figures; the proportions leave under the rule above.
SURVEILLANCE_COUNTS = ("n_signed", "n_outcomes")
ESTIMATES = ("agreement", "sensitivity", "specificity", "ppv")


@dataclass(frozen=True)
class Period:
    """Whole UTC days, ``start`` to ``end`` included."""

    start: date
    end: date

    def bounds(self) -> tuple[datetime, datetime]:
        """The first instant in, and the first instant after, the period."""
        return (datetime.combine(self.start, time(), UTC),
                datetime.combine(self.end + timedelta(days=1), time(), UTC))

    def over(self, today: date) -> bool:
        """Whether the period has ended (no screening can join it any more)."""
        return self.end < today


@dataclass
class ModelCounts:
    """One model version's images in the period: verdicts and score histogram."""

    id: str
    version: str
    sha256: str
    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    scores: list[int] = field(default_factory=lambda: [0] * BINS)

    def add(self, result: Result) -> None:
        """Count one result of this model."""
        verdict = result.get("verdict") or "ungradable"
        self.verdicts[verdict if verdict in self.verdicts else "ungradable"] += 1
        score = result.get("score")
        if verdict != "ungradable" and score is not None:
            self.scores[min(BINS - 1, max(0, int(float(score) * BINS)))] += 1


def kiosk_identity(config: Config) -> str:
    """This kiosk's name in fleet reports: KIOSK_KIOSK_ID, else a random UUID kept in the data
    folder (random, so it says nothing about the clinic's patients or its network)."""
    if config.kiosk_id.strip():
        return config.kiosk_id.strip()
    path = config.data_dir / "kiosk-id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex + "\n")
    return path.read_text().strip()


def count(results: Iterable[Result]) -> dict[str, dict[str, ModelCounts]]:
    """task -> "id@version" -> counts; results refused before any task read them are left out."""
    found: dict[str, dict[str, ModelCounts]] = {}
    for result in results:
        task, model = result.get("task"), result.get("model")
        if not task or not model:
            continue
        name = f"{model['id']}@{model['version']}"
        per_task = found.setdefault(task, {})
        per_task.setdefault(name, ModelCounts(model["id"], model["version"], model["sha256"]))
        per_task[name].add(result)
    return found


def period_results(store: Store, period: Period) -> list[Result]:
    """Every result of the screenings recorded in the period."""
    start, end = period.bounds()
    with store.db.read() as conn:
        texts = kept.results_between(conn, start, end)
    return [json.loads(text) for text in texts]


def figures(kiosk: str, period: Period, counts: Mapping[str, Mapping[str, ModelCounts]], *,
            drift: Sequence[Mapping[str, Any]] = (),
            surveillance: Sequence[Mapping[str, Any]] = (), min_cell: int = 5) -> dict[str, Any]:
    """The report's figures, small cells already left out (the module's docstring says how)."""
    return {
        "schema": SCHEMA, "kiosk": kiosk, "min_cell": min_cell,
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "tasks": [_task(task, counts[task], min_cell) for task in sorted(counts)],
        "drift": [_drift(row, min_cell) for row in drift],
        "surveillance": [_surveillance(row, min_cell) for row in surveillance],
    }


def queue(store: Store, period: Period, *, drift: Sequence[Mapping[str, Any]] = (),
          surveillance: Sequence[Mapping[str, Any]] = (), actor: str = "system",
          today: date | None = None, allow_open: bool = False) -> tuple[FleetReport, bool]:
    """Make the period's figures and queue them to the destinations taking fleet reports;
    (report, False) when the period was queued before (it is reported once)."""
    if period.end < period.start:
        raise StoreError("the period ends before it starts", code="bad_period")
    if not allow_open and not period.over(today or datetime.now(UTC).date()):
        raise StoreError(f"the period to {period.end} has not ended: screenings may still join "
                         "it (report it tomorrow, or say so with --include-today)",
                         code="period_open")
    kiosk = kiosk_identity(store.config)
    made = figures(kiosk, period, count(period_results(store, period)), drift=drift,
                   surveillance=surveillance, min_cell=store.config.fleet_min_cell)
    return store.queue_fleet_report(kiosk, made["period"]["start"], made["period"]["end"],
                                    made, actor=actor)


def running_figures(store: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The drift summary of the bundles in force (none when no bundle verifies) and the
    surveillance summary, as they stand now."""
    try:
        bundles, _ = active_bundles(store.config, store)  # docs/change-control.md
    except BundleError:
        bundles = {}
    return drift.summary(store, bundles), surveillance.summary(store)


def queue_yesterday(store: Store, today: date | None = None) -> FleetReport | None:
    """The daily schedule (KIOSK_FLEET_DAILY): queue yesterday's report unless it was queued
    already (cheap to ask every pass: the bundles are read only when a report is made)."""
    today = today or datetime.now(UTC).date()
    day = (today - timedelta(days=1)).isoformat()
    with store.db.read() as conn:
        if kept.find(conn, kiosk_identity(store.config), day, day) is not None:
            return None
    drift_rows, watched = running_figures(store)
    report, queued = queue(store, Period(today - timedelta(days=1), today - timedelta(days=1)),
                           drift=drift_rows, surveillance=watched, actor="schedule", today=today)
    return report if queued else None


def small(value: int, min_cell: int) -> bool:
    """A count that could single out a few patients."""
    return 0 < value < min_cell


def suppress(cells: Mapping[str, int], total_shown: bool, min_cell: int) -> dict[str, int | None]:
    """Counts that add up to a total, small ones left out; when the total is shown and a
    single cell is hidden, the smallest other non-zero cell is hidden too (else subtraction
    would give the hidden one back)."""
    shown: dict[str, int | None] = {k: (None if small(v, min_cell) else v) for k, v in cells.items()}
    hidden = [k for k, v in shown.items() if v is None]
    if total_shown and len(hidden) == 1:
        others = sorted((v, k) for k, v in cells.items() if k not in hidden and v > 0)
        if others:
            shown[others[0][1]] = None
    return shown


def _task(task: str, models: Mapping[str, ModelCounts], min_cell: int) -> dict[str, Any]:
    n = sum(sum(m.verdicts.values()) for m in models.values())
    totals = {v: sum(m.verdicts[v] for m in models.values()) for v in VERDICTS}
    model_n = suppress({name: sum(m.verdicts.values()) for name, m in models.items()},
                       not small(n, min_cell), min_cell)
    return {"task": task, **_counts(n, totals, min_cell),
            "models": [{"model": name, "id": m.id, "version": m.version, "sha256": m.sha256,
                        **_counts(sum(m.verdicts.values()), m.verdicts, min_cell,
                                  shown=model_n[name] is not None),
                        "scores": _histogram(m.scores, min_cell)}
                       for name, m in sorted(models.items())]}


def _counts(n: int, verdicts: Mapping[str, int], min_cell: int, *,
            shown: bool = True) -> dict[str, Any]:
    """n, its verdicts, gradable (referable + non-referable) and the referable share."""
    total = n if shown and not small(n, min_cell) else None
    cells = suppress(verdicts, total is not None, min_cell)
    # gradable = n - ungradable: shown only when ungradable is (or nothing can be subtracted)
    gradable = (n - verdicts["ungradable"]
                if cells["ungradable"] is not None or total is None else None)
    if gradable is not None and small(gradable, min_cell):
        gradable = None
    share = (round(verdicts["referable"] / gradable, 4)
             if gradable and cells["referable"] is not None else None)
    return {"n": total, "gradable": gradable, "verdicts": cells, "referable_share": share}


def _histogram(scores: list[int], min_cell: int) -> dict[str, Any]:
    total = sum(scores)
    shown = suppress({str(i): c for i, c in enumerate(scores)}, not small(total, min_cell),
                     min_cell)
    return {"edges": [round(i / BINS, 1) for i in range(BINS + 1)],
            "n": None if small(total, min_cell) else total,
            "counts": [shown[str(i)] for i in range(BINS)]}


def _drift(row: Mapping[str, Any], min_cell: int) -> dict[str, Any]:
    """A drift row's allowed keys; its statistics only over ``min_cell`` images or more."""
    kept_row: dict[str, Any] = {key: _scalar(row.get(key)) for key in DRIFT_KEYS}
    n = int(row.get("n") or 0)
    enough = n >= min_cell
    kept_row["n"] = n if enough or n == 0 else None
    if not enough:
        kept_row["value"] = None
    kept_row["quantities"] = [
        {"name": str(q.get("name")), "psi": _scalar(q.get("psi")) if enough else None}
        for q in row.get("quantities") or [] if isinstance(q, Mapping)]
    return kept_row


def _surveillance(row: Mapping[str, Any], min_cell: int) -> dict[str, Any]:
    """A surveillance row's allowed keys, small counts and the proportions made of them left out."""
    kept_row: dict[str, Any] = {key: _scalar(row.get(key)) for key in SURVEILLANCE_KEYS[:-1]}
    kept_row["alarms"] = [str(a) for a in row.get("alarms") or []]
    for key in SURVEILLANCE_COUNTS:
        value = int(row.get(key) or 0)
        kept_row[key] = None if small(value, min_cell) else value
    for key in ESTIMATES:
        kept_row[key] = _estimate(row.get(key), min_cell)
    return kept_row


def _estimate(estimate: Any, min_cell: int) -> dict[str, Any] | None:
    """A proportion {value, ci, n}, kept only when neither its successes nor its failures are
    a small cell."""
    if not isinstance(estimate, Mapping) or estimate.get("value") is None:
        return None
    n = int(estimate.get("n") or 0)
    successes = round(float(estimate["value"]) * n)
    if n < min_cell or small(successes, min_cell) or small(n - successes, min_cell):
        return None
    ci = [float(x) for x in estimate.get("ci") or []][:2]
    return {"value": float(estimate["value"]), "ci": ci, "n": n}


def _scalar(value: Any) -> str | int | float | bool | None:
    """A plain JSON scalar (text cut short: names and versions, never a note)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:80]
