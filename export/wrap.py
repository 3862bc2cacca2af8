"""Bring your own model: wrap a third-party ONNX file into a signed bundle from a short description.

The description is a TOML file (see ``export/examples/third-party-cxr.toml``): task, version,
name, the ONNX file, input spec and preprocessing steps, output name, labels, activation, and the
findings with their thresholds. Multi-finding (softmax or sigmoid) models are first-class.
"""

from __future__ import annotations

import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

from export.bundle import fresh_folder, seal, verify_with_kiosk
from export.errors import ExportError
from kiosk.preprocess import check_spec

DEFAULT_USE = "Research and demonstration only. Not for clinical decisions."


def read_description(path: Path) -> dict[str, Any]:
    """The parsed description; ExportError naming what is missing."""
    try:
        description = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExportError(f"cannot read the model description {path}: {exc}") from exc
    missing = [k for k in ("task", "version", "name", "input", "outputs", "findings") if k not in description]
    if missing:
        raise ExportError(f"{path.name} lacks {', '.join(missing)}")
    return description


#: Description keys that say what the task is, copied into the manifest as they are.
TASK_KEYS = ("kind", "title", "population", "prevalence", "codes", "referral")


def manifest_from(description: dict[str, Any], model_note: str) -> dict[str, Any]:
    """The bundle manifest a description implies (thresholds as given, not measured here)."""
    outputs = description["outputs"]
    labels = list(outputs["labels"])
    findings = []
    for finding in description["findings"]:
        if finding["label"] not in labels:
            raise ExportError(f"finding {finding['label']!r} is not one of the labels")
        findings.append(
            {
                "referable": True,
                "urgent": False,
                **finding,
                "operating_point": {
                    "target": "threshold supplied by the model's author; not measured by this kiosk project"
                },
            }
        )
    input_spec = {"layout": "NCHW", "dtype": "float32", **description["input"]}
    check_spec(input_spec)
    return {
        "format": 1,
        "task": description["task"],
        "version": description["version"],
        "name": description["name"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "variants": {"fp32": {"file": "model.onnx", "precision": description.get("precision", "fp32")}},
        "input": input_spec,
        "outputs": {
            "logits": outputs.get("logits", "logits"),
            "labels": labels,
            "activation": outputs.get("activation", "sigmoid"),
            **({"cam": outputs["cam"]} if outputs.get("cam") else {}),
        },
        "calibration": {"method": "none", "temperature": 1.0},
        "findings": findings,
        "training_data": description.get("training_data", {}),
        "intended_use": description.get("intended_use", DEFAULT_USE),
        "limitations": description.get("limitations", []),
        "provenance": {"wrapped_from": model_note, "by": "python -m export wrap"},
        # what the kiosk knows of the task (kiosk/tasks.py): its kind, title, population, codes
        **{key: description[key] for key in TASK_KEYS if key in description},
    }


def wrap(description_path: Path, out_root: Path, key: Any, key_id: str, model: Path | None = None) -> Path:
    """Write and sign the bundle ``out_root/<task>-<version>`` for a third-party ONNX model."""
    description = read_description(description_path)
    source = model or (description_path.parent / description.get("model", "model.onnx"))
    if not source.is_file():
        raise ExportError(f"the model file {source} does not exist")
    manifest = manifest_from(description, source.name)
    folder = fresh_folder(out_root / f"{description['task']}-{description['version']}")
    shutil.copyfile(source, folder / "model.onnx")
    card = description.get("card", "")
    (folder / "MODEL_CARD.md").write_text(_card(manifest, card), encoding="utf-8")
    seal(folder, manifest, key, key_id)
    verify_with_kiosk(folder, key, key_id)
    return folder


def _card(manifest: dict[str, Any], text: str) -> str:
    """A short model card for a wrapped model."""
    findings = "\n".join(
        f"| {f['label']} | {f.get('display', '')} | {f['threshold']} | {f['urgent']} |"
        for f in manifest["findings"]
    )
    limits = "\n".join(f"- {item}" for item in manifest["limitations"])
    return (
        f"# {manifest['name']} {manifest['version']}\n\n**Intended use.** {manifest['intended_use']}\n\n"
        f"{text}\n\n| finding | display | threshold | urgent |\n| --- | --- | --- | --- |\n{findings}\n\n"
        f"Thresholds come from the model's description and were not validated here.\n\n"
        f"## Limitations\n\n{limits}\n"
    )
