"""Kiosk-side validation of FHIR R4 resources with ``fhir.resources.R4B`` (pydantic models)."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from kiosk.sync.base import refused

MODULES = {"Bundle": "bundle", "DiagnosticReport": "diagnosticreport", "Device": "device",
           "ImagingStudy": "imagingstudy", "MeasureReport": "measurereport",
           "Observation": "observation", "Patient": "patient",
           "Provenance": "provenance"}


@cache
def _model(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{MODULES[resource_type]}")
    return getattr(module, resource_type)


def validate(resource: dict) -> None:
    """Raise a non-retryable SyncError when the resource is not valid FHIR R4."""
    kind = str(resource.get("resourceType"))
    if kind not in MODULES:
        raise refused("fhir", f"the kiosk has no validator for {kind}")
    try:
        _model(kind).model_validate(resource)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise refused("fhir", f"invalid {kind} (not sent): {_where(exc)}") from exc


def _where(exc: ValueError) -> str:
    """Which elements failed and why, without the values (they may be the patient's)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return type(exc).__name__
    return "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['type']}"
                     for error in errors(include_input=False))[:500]
