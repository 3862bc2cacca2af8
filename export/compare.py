"""Compare two paediatric chest bundles on the same films in one run, as the kiosk runs them.

``python -m export.compare OLD NEW`` scores both verified bundles (each with its own
preprocessing, calibration, shipped threshold and the variant the kiosk would run) on the same
in-house test split (by patient, the seed both recipes use), with a paired patient bootstrap of
the AUC difference, then (``--probes``) on every probe of export/generalise.py. Nothing is tuned
here: thresholds and temperatures are the bundles' own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from export.generalise import Films, Scorer, in_house_test, point, probe_all
from kiosk import stats


def paired_auc_difference(
    labels: np.ndarray, old: np.ndarray, new: np.ndarray, patients: np.ndarray, seed: int, rounds: int = 2000
) -> dict[str, Any]:
    """AUC(new) - AUC(old) on the same films, with a 95% CI from resampling patients (both models
    see the same resample, so the interval is of the difference, not of two separate AUCs)."""
    labels = np.asarray(labels).astype(bool)
    groups = np.unique(patients, return_inverse=True)[1]
    members = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)]
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(rounds):
        index = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        a, b = stats.auc(labels[index], new[index]), stats.auc(labels[index], old[index])
        if not (np.isnan(a) or np.isnan(b)):
            differences.append(a - b)
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "difference": round(stats.auc(labels, new) - stats.auc(labels, old), 4),
        "ci": [round(float(low), 4), round(float(high), 4)],
        "rounds": len(differences),
    }


def compare(
    old: Scorer, new: Scorer, test: Films, seed: int, probes: tuple[Path, dict[str, str]] | None = None
) -> dict[str, Any]:
    """Both bundles on the same test films (and, with ``probes`` = (data folder, splits), on every
    generalisation probe)."""
    p_old, p_new = old.probabilities(test.pixels), new.probabilities(test.pixels)
    out: dict[str, Any] = {
        "split": f"in-house test split, by patient (seed {seed}): {len(test.labels)} films",
        "old": point(test.labels, p_old, old.threshold, seed, test.patients),
        "new": point(test.labels, p_new, new.threshold, seed, test.patients),
        "auc_new_minus_old": paired_auc_difference(test.labels, p_old, p_new, test.patients, seed),
    }
    if probes is not None:
        data_dir, splits = probes
        out["probes"] = {
            "old": probe_all(old, data_dir, splits, seed),
            "new": probe_all(new, data_dir, splits, seed),
        }
    return out


def _row(name: str, entry: dict[str, Any]) -> str:
    """One markdown row: AUC, sensitivity and specificity with their CIs."""
    def cell(key: str) -> str:
        if key not in entry:
            return "-"
        low, high = entry[f"{key}_ci"]
        return f"{entry[key]:.4f} ({low:.4f}-{high:.4f})"

    return f"| {name} | {cell('auc')} | {cell('sensitivity')} | {cell('specificity')} |"


def summary(found: dict[str, Any], names: tuple[str, str]) -> str:
    """The comparison as markdown (the in-house split, then each probe where measured)."""
    diff = found["auc_new_minus_old"]
    lines = [
        found["split"],
        "",
        "| bundle | AUC (95% CI) | sensitivity | specificity |",
        "| --- | --- | --- | --- |",
        _row(names[0], found["old"]),
        _row(names[1], found["new"]),
        "",
        f"AUC {names[1]} - {names[0]}: {diff['difference']:+.4f} (paired patient bootstrap 95% CI "
        f"{diff['ci'][0]:+.4f} to {diff['ci'][1]:+.4f})",
    ]
    for probe, rows in (found.get("probes") or {}).get("new", {}).items():
        if not isinstance(rows, dict):
            continue
        entries = rows.items() if probe == "film_shifts" else [(probe, rows)]
        for shift, entry in entries:
            if probe == "pneumoniamnist":
                shift, entry = "pneumoniamnist test-split copies", entry["test_split_copies"]
            old_entry = found["probes"]["old"][probe]
            if probe == "film_shifts":
                old_entry = old_entry[shift]
            elif probe == "pneumoniamnist":
                old_entry = old_entry["test_split_copies"]
            lines += ["", f"{shift}:", _row(names[0], old_entry), _row(names[1], entry)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Compare two bundles; print markdown, write JSON where asked."""
    from export.data import SHARED_DATA, list_chest, split_patients

    parser = argparse.ArgumentParser(prog="python -m export.compare", description=__doc__)
    parser.add_argument("old", help="bundle folder, e.g. models/cxr-pneumonia-1.0.0")
    parser.add_argument("new", help="bundle folder, e.g. models/cxr-pneumonia-1.1.0")
    parser.add_argument("--data", default=str(SHARED_DATA))
    parser.add_argument("--trusted-keys", default="models/trusted_keys")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the patient split (both recipes')")
    parser.add_argument("--probes", action="store_true", help="also every probe of export/generalise.py")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    data_dir, keys = Path(args.data), Path(args.trusted_keys)
    _, _, patients = list_chest(data_dir)
    splits = dict(zip(patients.tolist(), split_patients(patients, args.seed).tolist(), strict=True))
    old, new = Scorer.from_bundle(Path(args.old), keys), Scorer.from_bundle(Path(args.new), keys)
    found = compare(
        old, new, in_house_test(data_dir, splits), args.seed, (data_dir, splits) if args.probes else None
    )
    found["bundles"] = {"old": str(old.model), "new": str(new.model)}
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2) + "\n")
    print(summary(found, (Path(args.old).name, Path(args.new).name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
