"""From the network's scores to what the nurse reads: findings, a verdict, and what a positive means.

Pure (numpy, plus OpenCV for the heat-map picture): calibrated probabilities against the
bundle's operating points give findings; findings and image quality give a per-image verdict;
the bundle's measured sensitivity and specificity at the clinic's prevalence give PPV and NPV;
``combine`` applies the screening programme's rules across a patient's images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kiosk import messages
from kiosk.pixels import as_rgb
from kiosk.result import FindingResult, Result
from kiosk.tasks import Population

REFERABLE, NON_REFERABLE, UNGRADABLE, RETAKE = "referable", "non_referable", "ungradable", "retake"
#: The named operating point of a threshold calibrated at this site (kiosk.lifecycle.validation).
SITE_POINT = "site"

#: Triage rank of urgent chest findings (higher is seen first); other urgent findings rank 2,
#: other referable findings 1, nothing positive 0. A manifest finding may set "priority" itself.
URGENT_RANK: dict[str, int] = {"pneumothorax": 3}
#: Rules a bundle may name for combining a patient's scores of one task into one.
PATIENT_RULES: dict[str, Callable[[Sequence[float]], float]] = {
    "max": max, "mean": lambda scores: sum(scores) / len(scores),
}


def probabilities(logits: np.ndarray, manifest: dict[str, Any]) -> np.ndarray:
    """Calibrated probabilities [N, K]: logits / temperature, then sigmoid or softmax."""
    temperature = float(manifest.get("calibration", {}).get("temperature", 1.0))
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if manifest["outputs"].get("activation", "sigmoid") == "softmax":
        shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-scaled))


def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """(PPV, NPV) of a test with this sensitivity and specificity at this prevalence."""
    true_pos = sensitivity * prevalence
    false_pos = (1.0 - specificity) * (1.0 - prevalence)
    true_neg = specificity * (1.0 - prevalence)
    false_neg = (1.0 - sensitivity) * prevalence
    ppv = true_pos / (true_pos + false_pos) if true_pos + false_pos > 0 else 0.0
    npv = true_neg / (true_neg + false_neg) if true_neg + false_neg > 0 else 1.0
    return ppv, npv


def explain_predictive_values(display: str, ppv: float, npv: float, prevalence: float,
                              ppv_range: Sequence[float] | None = None) -> str:
    """What a positive and a negative mean at this clinic, in numbers a nurse can say aloud."""
    flagged = round(100 * ppv)
    missed = round(100 * (1.0 - npv))
    spread = ""
    if ppv_range is not None and round(100 * ppv_range[0]) != round(100 * ppv_range[1]):
        spread = (f" (somewhere between {round(100 * ppv_range[0])} and {round(100 * ppv_range[1])}"
                  " given how few images the model was checked on)")
    return (f"At this clinic (about {100 * prevalence:.1f} in 100 screened have it): of 100 "
            f"images flagged for {display.lower()}, about {flagged} truly have it{spread}; of 100 "
            f"cleared, about {missed} do have it.")


def finding(spec: dict[str, Any], probability: float, prevalence: float) -> FindingResult:
    """One finding: the probability against its threshold, with PPV/NPV at the prevalence."""
    threshold = float(spec["threshold"])
    point = spec.get("operating_point", {})
    result: FindingResult = {
        "label": spec["label"], "display": spec.get("display", spec["label"]),
        "probability": round(float(probability), 4), "threshold": threshold,
        "positive": bool(probability >= threshold), "referable": bool(spec.get("referable", True)),
        "urgent": bool(spec.get("urgent", False)), "ppv": None, "npv": None,
    }
    if "sensitivity" in point and "specificity" in point:
        ppv, npv = predictive_values(float(point["sensitivity"]), float(point["specificity"]),
                                     prevalence)
        spread = _ppv_range(point, prevalence)
        result["ppv"], result["npv"] = round(ppv, 3), round(npv, 3)
        result["prevalence"], result["ppv_range"] = prevalence, spread
        result["meaning"] = (explain_predictive_values(result["display"], ppv, npv, prevalence,
                                                        spread))
    return result


def _ppv_range(point: dict[str, Any], prevalence: float) -> list[float] | None:
    """PPV at the low and high ends of the sensitivity/specificity confidence intervals."""
    sens_ci, spec_ci = point.get("sensitivity_ci"), point.get("specificity_ci")
    if not sens_ci or not spec_ci:
        return None
    low, _ = predictive_values(float(sens_ci[0]), float(spec_ci[0]), prevalence)
    high, _ = predictive_values(float(sens_ci[1]), float(spec_ci[1]), prevalence)
    return [round(low, 3), round(high, 3)]


def point_names(manifest: dict[str, Any]) -> list[str]:
    """The bundle's named operating points (e.g. "screening", "balanced"), in manifest order."""
    findings = manifest.get("findings") or [{}]
    return list(findings[0].get("operating_points") or {})


def default_point(manifest: dict[str, Any]) -> str | None:
    """The operating point a bundle ships in force (None: it names none)."""
    names = point_names(manifest)
    chosen = manifest.get("default_operating_point")
    return str(chosen) if chosen in names else (names[0] if names else None)


def at_point(spec: dict[str, Any], point: str | None) -> dict[str, Any]:
    """A manifest finding with the threshold and figures of the named operating point."""
    named = (spec.get("operating_points") or {}).get(point or "")
    if not named:
        return spec
    return {**spec, "threshold": named["threshold"], "operating_point": named}


def with_point(manifest: dict[str, Any], name: str, point: dict[str, Any]) -> dict[str, Any]:
    """A copy of the manifest with one more named operating point (a threshold set at a site).

    Its threshold applies to every referable finding, so an image is referable exactly when its
    score (the highest referable probability) reaches it, which is what a site's labelled set
    measured; other findings keep the bundle's default point. The manifest itself is untouched.
    """
    default = default_point(manifest)
    findings = []
    for spec in manifest["findings"]:
        points = dict(spec.get("operating_points") or {})
        if spec.get("referable", True):
            points[name] = point
        else:
            points[name] = points.get(default or "", {"threshold": spec["threshold"]})
        findings.append({**spec, "operating_points": points})
    return {**manifest, "findings": findings}


def findings_for(probs: np.ndarray, manifest: dict[str, Any], prevalence: float,
                 point: str | None = None) -> list[FindingResult]:
    """The manifest's findings for one image's probabilities [K], at the named operating point."""
    labels = list(manifest["outputs"]["labels"])
    return [finding(at_point(spec, point), float(probs[labels.index(spec["label"])]), prevalence)
            for spec in manifest["findings"]]


def patient_rule(manifest: dict[str, Any], point: str | None) -> dict[str, Any] | None:
    """How this task's images of one patient combine into one decision, at the operating point.

    A bundle may measure, on its calibration split, a rule over a patient's images (e.g. the
    mean of both eyes) with its own thresholds; None when it gives none for this point.
    """
    patient = manifest.get("patient") or {}
    named = (patient.get("operating_points") or {}).get(point or "")
    if patient.get("rule") not in PATIENT_RULES or not named:
        return None
    return {"rule": str(patient["rule"]), "threshold": float(named["threshold"]),
            "operating_point": str(point)}


def population_warning(population: Population | None, age_years: float | None) -> str | None:
    """A warning when the patient's age lies outside the ages the model was trained on."""
    if population is None or age_years is None or population.fits(age_years):
        return None
    if age_years < 1:
        return messages.say("outside_population_months", population=population.description,
                            months=int(age_years * 12))
    return messages.say("outside_population_years", population=population.description,
                        years=int(age_years))


def score(findings: Sequence[FindingResult]) -> float | None:
    """The referable probability: the highest among findings that make an image referable."""
    values = [f["probability"] for f in findings if f.get("referable", True)]
    return max(values) if values else None


def verdict(findings: Sequence[FindingResult], gradable: bool) -> str:
    """``ungradable`` if quality failed, ``referable`` if a referable finding is positive."""
    if not gradable:
        return UNGRADABLE
    if any(f["positive"] and f.get("referable", True) for f in findings):
        return REFERABLE
    return NON_REFERABLE


def priority(findings: Sequence[FindingResult], manifest: dict[str, Any] | None = None) -> int:
    """Triage priority of one image: urgent positives (pneumothorax first) above referable ones."""
    overrides = {f["label"]: f["priority"] for f in (manifest or {}).get("findings", [])
                 if "priority" in f}
    ranks = [overrides.get(f["label"], _rank(f)) for f in findings if f["positive"]]
    return int(max(ranks, default=0))


def _rank(found: FindingResult) -> int:
    """Default rank of one positive finding."""
    if found.get("urgent"):
        return URGENT_RANK.get(str(found["label"]).lower(), 2)
    return 1 if found.get("referable", True) else 0


def combine(results: Sequence[Result]) -> dict[str, Any]:
    """A screening's verdict from its results, the way screening programmes do it.

    Results are grouped by task and eye (films, which have no side, by image). Refer if any
    group is referable. Otherwise an ungradable eye means ``retake``; if that eye was already
    retaken (two or more ungradable images of it, none gradable), or its result needs a
    clinician to read it (``reader_required``), the verdict is ``ungradable`` and the patient is
    referred for an examination. A result that got no verdict (an error) counts as an
    ungradable attempt. Where a bundle measured a rule over a patient's images (e.g. the mean
    of both eyes), that one decision replaces its eyes' own when every eye was graded.
    """
    groups: dict[tuple[str, str], list[Result]] = {}
    for index, result in enumerate(results):
        side = result.get("laterality") or f"image-{result.get('image', index)}"
        groups.setdefault((str(result.get("task") or ""), str(side)), []).append(result)
    states = {key: _group_verdict(items) for key, items in groups.items()}
    states.update(_patient_decisions(groups, states))
    several = len({task for task, _ in groups}) > 1
    per_eye = {(f"{task}:{side}" if several else side): state
               for (task, side), state in states.items()}
    found = set(per_eye.values())
    if REFERABLE in found:
        overall, refer = REFERABLE, True
    elif UNGRADABLE in found:
        overall, refer = UNGRADABLE, True
    elif RETAKE in found or not found:
        overall, refer = RETAKE, False
    else:
        overall, refer = NON_REFERABLE, False
    return {"verdict": overall, "refer": refer, "per_eye": per_eye,
            "priority": max((int(r.get("priority") or 0) for r in results), default=0),
            "reasons": _reasons(results, per_eye)}


def _group_verdict(items: Sequence[Result]) -> str:
    """One eye's (or film's) state for one task from its images in capture order.

    A model result that a clinician must read (the patient lies outside the model's trained
    population) cannot clear the eye: unless something referable was found, it is
    ``ungradable`` by this kiosk, and the patient is referred for examination.
    """
    verdicts = [item.get("verdict") for item in items]
    if REFERABLE in verdicts:
        return REFERABLE
    if any(item.get("reader_required") for item in items):
        return UNGRADABLE
    if NON_REFERABLE in verdicts:
        return NON_REFERABLE
    return UNGRADABLE if len(verdicts) >= 2 else RETAKE


def _patient_decisions(groups: dict[tuple[str, str], list[Result]],
                       states: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """Group states replaced by the task's one decision per patient, where its bundle has one."""
    decided: dict[tuple[str, str], str] = {}
    for task in {task for task, _ in groups}:
        keys = [key for key in groups if key[0] == task]
        graded = [_last_graded(groups[key]) for key in keys]
        rule = graded[0].get("patient_rule") if graded[0] is not None else None
        if rule is None or any(g is None or g.get("reader_required") for g in graded):
            continue
        if any(states[key] not in (REFERABLE, NON_REFERABLE) for key in keys):
            continue
        scores = [float(g["score"] or 0.0) for g in graded if g is not None]
        value = PATIENT_RULES[rule["rule"]](scores)
        state = REFERABLE if value >= rule["threshold"] else NON_REFERABLE
        decided.update({key: state for key in keys})
    return decided


def _last_graded(items: Sequence[Result]) -> Result | None:
    """The last image of a group that got a referable / non-referable verdict."""
    graded = [item for item in items if item.get("verdict") in (REFERABLE, NON_REFERABLE)]
    return graded[-1] if graded else None


def _reasons(results: Sequence[Result], per_eye: dict[str, str]) -> list[str]:
    """Short sentences behind the screening verdict, for the result page and the report."""
    reasons = [f"{_eye_name(key)}: {state.replace('_', '-')}" for key, state in per_eye.items()]
    for result in results:
        if result.get("reader_required"):
            reasons.append(f"{_eye_name(result.get('laterality') or '')}: {result['reader_required']}")
        quality = result.get("quality")
        for reason in quality["reasons"] if quality else []:
            reasons.append(f"{_eye_name(result.get('laterality') or '')}: {reason['message']}")
    return reasons


def _eye_name(key: str) -> str:
    """'L' -> 'Left eye', 'cxr-adult:image-0' -> 'cxr-adult: image-0'; anything else as is."""
    task, _, side = key.rpartition(":")
    name = {"L": "Left eye", "R": "Right eye"}.get(side, side or "Image")
    return f"{task}: {name}" if task else name


def heatmap(pixels: np.ndarray, cam: np.ndarray, box: tuple[int, int, int, int] | None = None,
            *, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 picture: the class-activation map [h, w] upsampled over ``box`` of the image.

    ``box`` is (x0, y0, x1, y1), the part of the image the network saw (the fundus crop);
    None means the whole image. Only positive activation is shown, scaled to its maximum.
    """
    import cv2

    rgb = as_rgb(pixels)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box or (0, 0, width, height)
    heat = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    heat = heat / heat.max() if heat.max() > 0 else heat
    heat = cv2.resize(heat, (max(1, x1 - x0), max(1, y1 - y0)), interpolation=cv2.INTER_LINEAR)
    full = np.zeros((height, width), dtype=np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if sx1 > sx0 and sy1 > sy0:
        full[sy0:sy1, sx0:sx1] = heat[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    colour = cv2.applyColorMap((full * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    weight = (alpha * full)[:, :, None]
    return (rgb * (1.0 - weight) + colour * weight).astype(np.uint8)


def heatmap_png(pixels: np.ndarray, cam: np.ndarray, box: tuple[int, int, int, int] | None = None,
                *, max_side: int = 1024) -> bytes:
    """The heat-map overlay as PNG bytes, no larger than ``max_side`` on its longer side."""
    import cv2

    picture = heatmap(pixels, cam, box)
    longest = max(picture.shape[:2])
    if longest > max_side:
        factor = max_side / longest
        size = (round(picture.shape[1] * factor), round(picture.shape[0] * factor))
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(picture[:, :, ::-1]))
    if not ok:
        raise ValueError("PNG encoding of the heat-map failed")
    return encoded.tobytes()


def cam_label(findings: Sequence[FindingResult]) -> str | None:
    """The finding whose activation map to show: the most urgent positive, else the likeliest."""
    if not findings:
        return None
    ranked = sorted(findings, key=lambda f: (f["positive"], _rank(f) if f["positive"] else 0,
                                             f["probability"]))
    return str(ranked[-1]["label"])
