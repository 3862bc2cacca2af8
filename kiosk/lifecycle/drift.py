"""Drift alarms (issue 16.1): do this clinic's inputs and scores still look like the reference?

Every result carries its image's input features (``kiosk.pixels.features``: brightness,
contrast, sharpness, field of view, width, height, source device). Each bundle's manifest
carries, from build time, the same features binned over its calibration split
(``input_reference``) and the calibrated scores binned there (``score_distribution``). Per task,
the newest ``WINDOW`` results are binned alike and each quantity is compared with the
Population Stability Index,

    PSI = sum over bins of (recent share - reference share) * ln(recent share / reference share)

(shares smoothed by half a case per bin, so an empty bin is finite). The task's statistic is the
largest PSI of its quantities; the alarm goes off when it passes the task's threshold. The window
and thresholds are measured, not guessed: ``bench/drift.py`` samples windows of held-out images
of the training data set (false alarms) and of shifted images (time to alarm); see
docs/monitoring.md for the method and the figures.

The source device has no reference (public training sets name none): the devices of the site's
first ``FIRST_CASES`` results of a task are its baseline, and a device outside it appearing in
the window raises the alarm too.

An alarm is audited once when raised (``drift.alarm``) and once when it clears (``drift.clear``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engines.bundle import Bundle
from kiosk.pixels.features import NUMERIC, VERSION
from kiosk.store import Store
from kiosk.store import audit as audit_log
from kiosk.store import drift as kept

#: The statistic compared with the threshold.
STATISTIC = "psi"
#: Results per task compared with the reference (the newest ones): 100 raised no more than one
#: false alarm per 1000 checks on held-out images and alarmed within 35 shifted cases (50: up to
#: 1.8 per 1000, docs/monitoring.md).
WINDOW = 100
#: The alarm threshold on the largest PSI of a window of ``WINDOW`` results, per task: the 99.5th
#: percentile over windows of held-out images of the task's own data set, measured by
#: ``python -m bench.drift --windows 50 100 --streams 40`` (docs/monitoring.md). A task not
#: measured gets the largest of them.
THRESHOLDS: dict[str, float] = {"fundus-dr": 0.58, "cxr-adult": 0.91, "cxr-pneumonia": 0.58}
DEFAULT_THRESHOLD = max(THRESHOLDS.values())
#: A site's first results of a task whose source devices are the device baseline.
FIRST_CASES = 30
#: Quantile cut points of the reference bins of a numeric feature (deciles).
QUANTILES = tuple(np.round(np.arange(0.1, 1.0, 0.1), 2).tolist())
#: Half a case added to every bin so that an empty bin has a finite share.
SMOOTHING = 0.5
#: Who the audit log names for a drift alarm.
ACTOR = "drift"


@dataclass(frozen=True)
class Quantity:
    """One compared quantity: its bins, the reference's and the window's counts, and its PSI.

    Bin ``i`` holds values ``v`` with ``edges[i-1] <= v < edges[i]``; the first bin holds values
    below ``edges[0]`` and the last those from ``edges[-1]`` up (``len(counts) = len(edges) + 1``).
    """

    name: str
    edges: list[float]
    reference: list[int]
    recent: list[int]
    psi: float | None


@dataclass(frozen=True)
class TaskDrift:
    """The drift of one task's inputs and scores over its newest results."""

    task: str
    model_version: str
    n: int
    statistic: str
    value: float | None
    threshold: float
    alarm: bool
    window: int = WINDOW
    quantities: list[Quantity] = field(default_factory=list)
    new_devices: list[str] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: counts, bins and statistics only, never a patient."""
        return asdict(self)


def summary(store: Store, bundles: Mapping[str, Bundle]) -> list[dict[str, Any]]:
    """One JSON-safe dict per loaded task: its drift now, alarms audited once when raised.

    ``bundles`` maps task -> the bundle in force (``Pipeline.models[task].bundle``, or
    ``kiosk.bundles.load_bundles``). Each dict: ``task``, ``model_version``, ``n`` (results
    compared), ``statistic`` ("psi"), ``value`` (the largest PSI of the quantities; None while
    fewer than ``window`` results exist), ``threshold``, ``alarm`` (bool), ``window``,
    ``quantities`` (per feature and the score: bins, reference and recent counts, PSI),
    ``new_devices`` (source devices outside the site's baseline) and ``reason`` (why the
    statistic is missing, if it is). No patient data: counts, bins and statistics only.
    """
    return [drift.to_dict() for drift in check(store, bundles)]


def check(store: Store, bundles: Mapping[str, Bundle]) -> list[TaskDrift]:
    """Each task's drift (sorted by task), its alarm audited when raised or cleared."""
    found = []
    for task in sorted(bundles):
        with store.db.read() as conn:
            cases = kept.recent(conn, task, WINDOW)
            baseline = kept.first(conn, task, FIRST_CASES)
        found.append(measure(bundles[task], cases, baseline))
    _remember(store, found)
    return found


def measure(bundle: Bundle, cases: Sequence[Mapping[str, Any]],
            baseline: Sequence[Mapping[str, Any]] = (), *, window: int = WINDOW,
            threshold: float | None = None) -> TaskDrift:
    """A task's drift over ``cases`` (oldest first, each ``inputs``, ``score``, ``sha256``);
    ``window`` and ``threshold`` other than the kiosk's are for bench/drift.py."""
    manifest, task = bundle.manifest, bundle.task
    if threshold is None:
        threshold = THRESHOLDS.get(task, DEFAULT_THRESHOLD)
    common = {"task": task, "model_version": bundle.version, "n": len(cases),
              "statistic": STATISTIC, "threshold": threshold, "window": window}
    reference = manifest.get("input_reference") or {}
    if reference.get("version") != VERSION:
        return TaskDrift(**common, value=None, alarm=False,  # type: ignore[arg-type]
                         reason="The bundle carries no input reference of this kiosk's features.")
    quantities = compare(manifest, cases, bundle.sha256, window)
    devices = new_devices(cases, baseline)
    full = len(cases) >= window
    values = [q.psi for q in quantities if q.psi is not None]
    value = round(max(values), 4) if full and values else None
    reason = "" if full else f"Fewer than {window} results of this task so far."
    return TaskDrift(**common, value=value,  # type: ignore[arg-type]
                     alarm=bool(devices) or (value is not None and value > threshold),
                     quantities=quantities, new_devices=devices, reason=reason)


def compare(manifest: Mapping[str, Any], cases: Sequence[Mapping[str, Any]],
            sha256: str, window: int = WINDOW) -> list[Quantity]:
    """Each numeric feature, then the score (of this bundle's results only), against the
    manifest's references."""
    features = manifest["input_reference"]["features"]
    found = []
    for name in NUMERIC:
        if name in features:
            values = [float(c["inputs"][name]) for c in cases if name in c["inputs"]]
            found.append(_quantity(name, features[name], values, window))
    scores = [float(c["score"]) for c in cases if c.get("score") is not None
              and c.get("sha256") == sha256]
    distribution = manifest.get("score_distribution")
    if distribution:
        found.append(_quantity("score", score_reference(distribution), scores, window))
    return found


def _quantity(name: str, reference: Mapping[str, Any], values: Sequence[float],
              window: int) -> Quantity:
    """One quantity's bins and PSI (None with fewer than half a window of values)."""
    edges = [float(e) for e in reference["edges"]]
    expected = [int(c) for c in reference["counts"]]
    observed = binned(edges, values)
    value = round(psi(expected, observed), 4) if len(values) >= window // 2 else None
    return Quantity(name, edges, expected, observed, value)


def binned(edges: Sequence[float], values: Sequence[float]) -> list[int]:
    """Counts of ``values`` in the bins of ``edges`` (see :class:`Quantity`)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64),
                            side="right")
    return [int(c) for c in np.bincount(index, minlength=len(edges) + 1)]


def psi(expected: Sequence[int], observed: Sequence[int]) -> float:
    """Population Stability Index of observed counts against expected ones (same bins)."""
    e = np.asarray(expected, dtype=np.float64) + SMOOTHING
    o = np.asarray(observed, dtype=np.float64) + SMOOTHING
    e, o = e / e.sum(), o / o.sum()
    return float(np.sum((o - e) * np.log(o / e)))


def reference_bins(values: Sequence[float]) -> dict[str, list[Any]]:
    """Bins for a numeric feature from reference values: decile cut points, plus the smallest
    value and just above the largest (so values outside the reference's range fall in bins of
    their own), and the reference's counts in them."""
    data = np.asarray(values, dtype=np.float64)
    top = float(np.nextafter(data.max(), np.inf))
    edges = sorted({float(c) for c in [*np.quantile(data, QUANTILES).tolist(), data.min()]})
    edges = [e for e in edges if e < top] + [top]
    return {"edges": edges, "counts": binned(edges, data.tolist())}


def score_reference(distribution: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The manifest's ``score_distribution`` (numpy.histogram bins over 0..1) as Quantity bins."""
    bins = [float(b) for b in distribution["bins"]]
    return {"edges": bins[1:-1], "counts": [int(c) for c in distribution["counts"]]}


def input_reference(features: Sequence[Mapping[str, Any]], split: str) -> dict[str, Any]:
    """The manifest's ``input_reference``: every numeric feature binned over ``features`` (one
    dict per image of the split, from ``kiosk.pixels.features.features_of``) and the devices
    seen there."""
    devices: dict[str, int] = {}
    for one in features:
        devices[str(one["device"])] = devices.get(str(one["device"]), 0) + 1
    return {
        "version": VERSION,
        "split": split,
        "n": len(features),
        "of": "kiosk.pixels.features.features_of on the decoded working copy",
        "features": {name: reference_bins([float(f[name]) for f in features]) for name in NUMERIC},
        "devices": dict(sorted(devices.items())),
    }


def new_devices(cases: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]]) -> list[str]:
    """Source devices in ``cases`` never seen in the site's first ``FIRST_CASES`` results (none
    until the site has that many: the baseline is not known before)."""
    if len(baseline) < FIRST_CASES:
        return []
    known = {str(c["inputs"].get("device", "unknown")) for c in baseline}
    return sorted({str(c["inputs"].get("device", "unknown")) for c in cases} - known)


def _key(drift: TaskDrift) -> str:
    """An alarm's identity in the audit log: the task and its model version."""
    return f"{drift.task} {drift.model_version}"


def _remember(store: Store, found: Sequence[TaskDrift]) -> None:
    """Audit an alarm once when raised and once when it clears."""
    with store.db.read() as conn:
        changed = [d for d in found if d.alarm != kept.raised(conn, _key(d))]
    if not changed:
        return
    with store.db.write() as conn:
        for drift in changed:
            if drift.alarm == kept.raised(conn, _key(drift)):
                continue  # another process audited it meanwhile
            action = kept.RAISED if drift.alarm else kept.CLEARED
            audit_log.append(conn, ACTOR, action, detail=f"{_key(drift)}: {_words(drift)}")


def _words(drift: TaskDrift) -> str:
    """What the audit log says: the statistic against its threshold, and new devices."""
    words = (f"{drift.statistic} {drift.value:.3f} against {drift.threshold:.3f} over the last "
             f"{drift.n} results" if drift.value is not None else drift.reason or "no statistic")
    if drift.new_devices:
        words += f"; new source device(s): {', '.join(drift.new_devices)}"
    return words
