"""From the network's scores to what the nurse reads: findings, a verdict, and what a positive means.

Pure (numpy, plus OpenCV for the heat-map picture): calibrated probabilities against the
bundle's operating points give findings; findings and image quality give a per-image verdict;
the bundle's measured sensitivity and specificity at the clinic's prevalence give PPV and NPV;
``combine`` applies the screening programme's rules across a patient's images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

REFERABLE, NON_REFERABLE, UNGRADABLE, RETAKE = "referable", "non_referable", "ungradable", "retake"

#: Triage rank of urgent chest findings (higher is seen first); other urgent findings rank 2,
#: other referable findings 1, nothing positive 0. A manifest finding may set "priority" itself.
URGENT_RANK: dict[str, int] = {"pneumothorax": 3}


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


def finding(spec: dict[str, Any], probability: float, prevalence: float) -> dict[str, Any]:
    """One finding: the probability against its threshold, with PPV/NPV at the prevalence."""
    threshold = float(spec["threshold"])
    point = spec.get("operating_point", {})
    result: dict[str, Any] = {
        "label": spec["label"], "display": spec.get("display", spec["label"]),
        "probability": round(float(probability), 4), "threshold": threshold,
        "positive": bool(probability >= threshold), "referable": bool(spec.get("referable", True)),
        "urgent": bool(spec.get("urgent", False)), "ppv": None, "npv": None,
    }
    if "sensitivity" in point and "specificity" in point:
        ppv, npv = predictive_values(float(point["sensitivity"]), float(point["specificity"]),
                                     prevalence)
        spread = _ppv_range(point, prevalence)
        result.update(ppv=round(ppv, 3), npv=round(npv, 3), prevalence=prevalence, ppv_range=spread,
                      meaning=explain_predictive_values(result["display"], ppv, npv, prevalence,
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


def findings_for(probs: np.ndarray, manifest: dict[str, Any], prevalence: float) -> list[dict[str, Any]]:
    """The manifest's findings for one image's probabilities [K]."""
    labels = list(manifest["outputs"]["labels"])
    return [finding(spec, float(probs[labels.index(spec["label"])]), prevalence)
            for spec in manifest["findings"]]


def population_warning(population: dict[str, Any] | None, age_years: float | None) -> str | None:
    """A warning when the patient's age lies outside the ages the model was trained on."""
    if not population or age_years is None or "age_years" not in population:
        return None
    low, high = (float(v) for v in population["age_years"])
    if low <= age_years <= high:
        return None
    trained_on = population.get("description") or f"patients aged {low:g}-{high:g}"
    return (f"This model was trained on {trained_on}; this patient is {int(age_years)} years old. "
            "Its result is not reliable for this patient: a clinician must read the image.")


def score(findings: Sequence[dict[str, Any]]) -> float | None:
    """The referable probability: the highest among findings that make an image referable."""
    values = [f["probability"] for f in findings if f.get("referable", True)]
    return max(values) if values else None


def verdict(findings: Sequence[dict[str, Any]], gradable: bool) -> str:
    """``ungradable`` if quality failed, ``referable`` if a referable finding is positive."""
    if not gradable:
        return UNGRADABLE
    if any(f["positive"] and f.get("referable", True) for f in findings):
        return REFERABLE
    return NON_REFERABLE


def priority(findings: Sequence[dict[str, Any]], manifest: dict[str, Any] | None = None) -> int:
    """Triage priority of one image: urgent positives (pneumothorax first) above referable ones."""
    overrides = {f["label"]: f["priority"] for f in (manifest or {}).get("findings", [])
                 if "priority" in f}
    ranks = [overrides.get(f["label"], _rank(f)) for f in findings if f["positive"]]
    return int(max(ranks, default=0))


def _rank(found: dict[str, Any]) -> int:
    """Default rank of one positive finding."""
    if found.get("urgent"):
        return URGENT_RANK.get(str(found["label"]).lower(), 2)
    return 1 if found.get("referable", True) else 0


def combine(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A screening's verdict from its images, the way screening programmes do it.

    Refer if any eye (or film) is referable. Otherwise an ungradable eye means ``retake``; if
    that eye was already retaken (two or more ungradable images of it, none gradable), or its
    result needs a clinician to read it (``reader_required``), the verdict is ``ungradable`` and
    the patient is referred for an examination. Images are grouped
    by ``laterality`` (films without one form their own group); an image that got no verdict
    (an error) counts as an ungradable attempt.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for index, result in enumerate(results):
        key = result.get("laterality") or f"image-{index}"
        groups.setdefault(str(key), []).append(result)
    per_eye = {key: _group_verdict(items) for key, items in groups.items()}
    states = set(per_eye.values())
    if REFERABLE in states:
        overall, refer = REFERABLE, True
    elif UNGRADABLE in states:
        overall, refer = UNGRADABLE, True
    elif RETAKE in states:
        overall, refer = RETAKE, False
    elif states:
        overall, refer = NON_REFERABLE, False
    else:
        overall, refer = RETAKE, False
    return {"verdict": overall, "refer": refer, "per_eye": per_eye,
            "priority": max((int(r.get("priority") or 0) for r in results), default=0),
            "reasons": _reasons(results, per_eye)}


def _group_verdict(items: Sequence[dict[str, Any]]) -> str:
    """One eye's (or film's) state from its images in capture order.

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


def _reasons(results: Sequence[dict[str, Any]], per_eye: dict[str, str]) -> list[str]:
    """Short sentences behind the screening verdict, for the result page and the report."""
    reasons = [f"{_eye_name(key)}: {state.replace('_', '-')}" for key, state in per_eye.items()]
    for result in results:
        if result.get("reader_required"):
            reasons.append(f"{_eye_name(result.get('laterality') or '')}: {result['reader_required']}")
        for reason in (result.get("quality") or {}).get("reasons", []):
            reasons.append(f"{_eye_name(result.get('laterality') or '')}: {reason['message']}")
    return reasons


def _eye_name(key: str) -> str:
    """'L' -> 'Left eye'; anything else as is."""
    return {"L": "Left eye", "R": "Right eye"}.get(key, key or "Image")


def heatmap(pixels: np.ndarray, cam: np.ndarray, box: tuple[int, int, int, int] | None = None,
            *, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 picture: the class-activation map [h, w] upsampled over ``box`` of the image.

    ``box`` is (x0, y0, x1, y1), the part of the image the network saw (the fundus crop);
    None means the whole image. Only positive activation is shown, scaled to its maximum.
    """
    import cv2

    rgb = np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels
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


def cam_label(findings: Sequence[dict[str, Any]]) -> str | None:
    """The finding whose activation map to show: the most urgent positive, else the likeliest."""
    if not findings:
        return None
    ranked = sorted(findings, key=lambda f: (f["positive"], _rank(f) if f["positive"] else 0,
                                             f["probability"]))
    return str(ranked[-1]["label"])
