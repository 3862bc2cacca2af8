"""Surveillance from the clinicians' decisions (issue 16.3): is the model still as good as its card?

Every screening a clinician signed (confirm / overrule, with the verdict they stand behind) and
every referral outcome entered later is a labelled case. Per model version (task, version,
bundle sha256) and the operating point its results were made at, the running agreement,
sensitivity, specificity and PPV are estimated with Wilson 95% intervals.

Reference standard: the referral outcome where one is entered (the specialist saw the patient),
else the clinician's verdict (referable = has it, non-referable = has not; ungradable counts for
agreement only). The model's call is its task's screening decision (``decide.combine`` over the
task's results, so a bundle's both-eyes rule is honoured); a task that graded nothing is skipped.

Alarm: a sensitivity or specificity whose running Wilson interval lies wholly below the model
card's interval (upper bound < the card's lower bound) for the operating point in force. Both
intervals are 95%, so the alarm says the two do not even overlap: few cases never raise it (the
running interval is wide), and a true drop raises it as cases accumulate. For results made at
a threshold calibrated at this site, the card is the site validation's own interval.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.bundle import MANIFEST, find_bundles
from kiosk.config import Config
from kiosk.decide import NON_REFERABLE, REFERABLE, SITE_POINT, UNGRADABLE, combine
from kiosk.result import Result
from kiosk.stats import wilson
from kiosk.store import Store, records
from kiosk.store import audit as audit_log
from kiosk.store import lifecycle as kept

#: The estimates the card gives an interval for, and so the ones that can raise an alarm.
WATCHED = ("sensitivity", "specificity")

Key = tuple[str, str, str, str]  # task, version, sha256, operating point ("" when none)


@dataclass
class Tally:
    """Counts for one model version at one operating point."""

    signed: int = 0
    agreed: int = 0
    outcomes: int = 0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    card: dict[str, list[float]] | None = field(default=None)

    def add(self, call: str, verdict: str | None, outcome: str | None) -> None:
        """Count one decided screening: the model's call against the clinician and the outcome."""
        if verdict is not None:
            self.signed += 1
            self.agreed += int(call == verdict)
        self.outcomes += int(outcome is not None)
        has_it = truth(verdict, outcome)
        if has_it is None:
            return
        positive = call == REFERABLE
        self.tp += int(positive and has_it)
        self.fp += int(positive and not has_it)
        self.tn += int(not positive and not has_it)
        self.fn += int(not positive and has_it)


def truth(verdict: str | None, outcome: str | None) -> bool | None:
    """Whether the patient has it: the referral's outcome, else the clinician's verdict."""
    if outcome is not None:
        return outcome == "disease"
    return {REFERABLE: True, NON_REFERABLE: False}.get(verdict or UNGRADABLE)


def _estimate(successes: int, total: int) -> dict[str, Any] | None:
    """A proportion with its Wilson 95% interval (None with no case)."""
    if total == 0:
        return None
    low, high = wilson(successes, total)
    return {"value": round(successes / total, 4), "ci": [round(low, 4), round(high, 4)],
            "n": total}


def summary(store: Store) -> list[dict[str, Any]]:
    """Running agreement, sensitivity, specificity and PPV per model version, with 95% CIs.

    One JSON-safe dict per (task, model version, sha256, operating point) that produced a
    decided screening (signed by a clinician, or with a referral outcome), sorted by those keys:
    ``task``, ``model_version``, ``model_sha256``, ``operating_point`` (None when the bundle
    names none), counts ``n_signed``, ``n_agreed``, ``n_outcomes``, ``tp``, ``fp``, ``tn``,
    ``fn``; ``agreement``, ``sensitivity``, ``specificity``, ``ppv`` each
    ``{"value", "ci": [low, high], "n"}`` or None; ``card`` (the card's ``sensitivity_ci`` and
    ``specificity_ci``, None when unknown); ``alarm`` (bool) and ``alarms`` (the measures below
    the card). No patient data: only counts and proportions. Alarms newly raised are remembered
    and audited once (``surveillance.alarm``); one that recovers is cleared and audited.
    """
    tallies = tally(store)
    cards = card_intervals(store.config, _sites(store))
    rows = [_row(key, tallies[key], cards.get(key)) for key in sorted(tallies)]
    _remember_alarms(store, rows)
    return rows


def enter_outcome(store: Store, screening_id: int, outcome: str, note: str, *, actor: str) -> None:
    """Record what the referral of a screening found ("disease" / "no_disease"), audited.

    Entered later by a clinician or an admin; it outranks the sign-off as the reference.
    """
    with store.db.write() as conn:
        patient_id = records.get_screening(conn, screening_id).patient.id  # NotFoundError
        kept.set_outcome(conn, screening_id, outcome, note, actor)
        audit_log.append(conn, actor, "screening.referral_outcome", patient_id=patient_id,
                         detail=f"screening {screening_id}: {outcome}")


def outcome_of(store: Store, screening_id: int) -> dict[str, str] | None:
    """The referral outcome entered for a screening (outcome, note, entered, actor), if any."""
    with store.db.read() as conn:
        return kept.get_outcome(conn, screening_id)


def tally(store: Store) -> dict[Key, Tally]:
    """Counts per model version and operating point over every decided screening."""
    tallies: dict[Key, Tally] = {}
    with store.db.read() as conn:
        decided = kept.decided_screenings(conn)
    for row in decided:
        verdict = row["verdict"] if row["decision"] is not None else None
        for key, call in model_calls(kept.results_of(row)).items():
            tallies.setdefault(key, Tally()).add(call, verdict, row["outcome"])
    return tallies


def model_calls(results: Iterable[Result]) -> dict[Key, str]:
    """Each model version's decision on one screening (referable / non-referable), when it made one."""
    groups: dict[Key, list[Result]] = {}
    for result in results:
        model = result.get("model")
        if model is None or result.get("task") is None:
            continue
        key = (str(result["task"]), model["version"], model["sha256"],
               model.get("operating_point") or "")
        groups.setdefault(key, []).append(result)
    calls = {key: str(combine(items)["verdict"]) for key, items in groups.items()}
    return {key: call for key, call in calls.items() if call in (REFERABLE, NON_REFERABLE)}


def _row(key: Key, counts: Tally, card: dict[str, list[float]] | None) -> dict[str, Any]:
    """One summary entry: counts, estimates, the card's interval and the alarm."""
    task, version, sha, point = key
    row: dict[str, Any] = {
        "task": task, "model_version": version, "model_sha256": sha,
        "operating_point": point or None, "n_signed": counts.signed, "n_agreed": counts.agreed,
        "n_outcomes": counts.outcomes, "tp": counts.tp, "fp": counts.fp, "tn": counts.tn,
        "fn": counts.fn,
        "agreement": _estimate(counts.agreed, counts.signed),
        "sensitivity": _estimate(counts.tp, counts.tp + counts.fn),
        "specificity": _estimate(counts.tn, counts.tn + counts.fp),
        "ppv": _estimate(counts.tp, counts.tp + counts.fp),
        "card": card,
    }
    row["alarms"] = below_card(row, card)
    row["alarm"] = bool(row["alarms"])
    return row


def below_card(row: Mapping[str, Any], card: Mapping[str, list[float]] | None) -> list[str]:
    """The watched measures whose running interval lies wholly below the card's interval."""
    if card is None:
        return []
    return [name for name in WATCHED
            if row.get(name) and card.get(f"{name}_ci")
            and row[name]["ci"][1] < card[f"{name}_ci"][0]]


def card_intervals(config: Config, sites: Mapping[tuple[str, str], dict[str, Any]]
                   ) -> dict[Key, dict[str, list[float]]]:
    """The card's sensitivity/specificity intervals per (task, version, sha256, point).

    Read from the manifests in the models folder: a result's sha256 is its manifest's, so a
    manifest whose bytes hash to it is the card the result was made under. ``sites`` maps
    (task, sha256) to the site point's figures, the card of results made at it.
    """
    found: dict[Key, dict[str, list[float]]] = {}
    for raw in _manifest_bytes(config.models_dir):
        manifest, sha = json.loads(raw), hashlib.sha256(raw).hexdigest()
        task, version = str(manifest.get("task")), str(manifest.get("version"))
        for point, figures in _card_points(manifest).items():
            found[(task, version, sha, point)] = figures
        site = sites.get((task, sha))
        if site is not None:
            found[(task, version, sha, SITE_POINT)] = _interval(site) or {}
    return {key: value for key, value in found.items() if value}


def _card_points(manifest: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Intervals per operating point name ("" for a bundle that names none).

    A bundle with a rule over a patient's images measured it per patient: those are the figures
    of its screening decision. Otherwise the one referable finding's (a task with several
    referable findings has no per-image figure on its card, so no alarm).
    """
    patient = (manifest.get("patient") or {}).get("operating_points") or {}
    referable = [f for f in manifest.get("findings", []) if f.get("referable", True)]
    if len(referable) != 1:
        return {}
    spec = referable[0]
    points: dict[str, dict[str, Any]] = {"": spec.get("operating_point") or {}}
    points.update(spec.get("operating_points") or {})
    if patient and manifest["patient"].get("rule"):
        points.update(patient)
    return {name: figures for name, point in points.items()
            if (figures := _interval(point)) is not None}


def _interval(point: Mapping[str, Any]) -> dict[str, list[float]] | None:
    """The sensitivity and specificity intervals of an operating point's figures."""
    if not point.get("sensitivity_ci") or not point.get("specificity_ci"):
        return None
    return {"sensitivity_ci": [float(v) for v in point["sensitivity_ci"]],
            "specificity_ci": [float(v) for v in point["specificity_ci"]]}


def _manifest_bytes(models_dir: Path) -> list[bytes]:
    """The raw manifest of every bundle folder or archive in the models folder."""
    found: list[bytes] = []
    for path in find_bundles(models_dir):
        if path.is_dir():
            found.append((path / MANIFEST).read_bytes())
            continue
        with tarfile.open(path) as archive:
            member = next((m for m in archive.getmembers() if Path(m.name).name == MANIFEST
                           and m.isfile()), None)
            handle = archive.extractfile(member) if member is not None else None
            if handle is not None:
                found.append(handle.read())
    return found


def _sites(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    """The figures of every site threshold ever applied, by (task, bundle sha256)."""
    with store.db.read() as conn:
        runs = kept.validations(conn, limit=1000)
    return {(run.task, run.model_sha256): run.report["proposal"]["proposed"]
            for run in reversed(runs) if run.applied is not None and run.report.get("proposal")}


def _remember_alarms(store: Store, rows: list[dict[str, Any]]) -> None:
    """Audit each alarm once when raised, and once when its estimate is back in range."""
    raised = {_alarm_key(row, name): row for row in rows for name in row["alarms"]}
    with store.db.read() as conn:
        known = kept.alarms(conn)
    if set(raised) == set(known):
        return
    with store.db.write() as conn:
        for key, row in raised.items():
            detail = _alarm_words(key, row)
            if kept.raise_alarm(conn, key, detail):
                audit_log.append(conn, "surveillance", "surveillance.alarm", detail=detail)
        for key in set(known) - set(raised):
            if kept.clear_alarm(conn, key):
                audit_log.append(conn, "surveillance", "surveillance.clear", detail=key)


def _alarm_key(row: Mapping[str, Any], measure: str) -> str:
    """One alarm's identity: the model version, its operating point and the measure."""
    return "|".join([row["task"], row["model_version"], row["model_sha256"],
                     row["operating_point"] or "", measure])


def _alarm_words(key: str, row: Mapping[str, Any]) -> str:
    """What the audit log says about an alarm (figures only)."""
    measure = key.rsplit("|", 1)[1]
    estimate, card = row[measure], row["card"][f"{measure}_ci"]
    return (f"{row['task']} {row['model_version']} ({row['model_sha256'][:12]}) at "
            f"{row['operating_point'] or 'its threshold'}: {measure} {estimate['value']:.3f} "
            f"(95% CI {estimate['ci'][0]:.3f}-{estimate['ci'][1]:.3f}, n = {estimate['n']}) is "
            f"below the model card's {card[0]:.3f}-{card[1]:.3f}")
