"""The OpenAPI 3.1 description of ``/api``; a test checks it against the real routes."""

from __future__ import annotations

from typing import Any

from kiosk import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response with a JSON body."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """Error responses, each with the Error body."""
    words = {400: "Bad request", 401: "Not logged in", 403: "Role not allowed",
             404: "Not found", 409: "Conflicts with what is recorded",
             422: "Image refused or must be retaken"}
    return {str(s): _json(_ERROR, words[s]) for s in statuses}


def _id_param(name: str) -> dict[str, Any]:
    """An integer path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


_UPLOAD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "Images whose task is detected (DICOM, PNG, JPEG)."},
        "right_eye": {"type": "string", "format": "binary"},
        "left_eye": {"type": "string", "format": "binary"},
        "chest": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "laterality": {"type": "string", "enum": ["L", "R"]},
        "task": {"type": "string", "examples": ["fundus-dr", "cxr-pneumonia"]},
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string", "description": "The kiosk's words, in English."},
            "words": {"type": "string",
                      "description": "The same in the reader's language (Accept-Language)."},
            "screening_id": {"type": "integer", "description": "With film_seen_before (409): "
                             "the screening of the same film (SOP Instance UID and pixels)."},
        },
    },
    "Patient": {
        "type": "object",
        "required": ["id", "identifier", "name"],
        "properties": {
            "id": {"type": "integer"},
            "identifier": {"type": "string"},
            "name": {"type": "string", "description": "The name as people write it."},
            "family_name": {"type": ["string", "null"],
                            "description": "Null when the name was registered as one text."},
            "given_names": {"type": "array", "items": {"type": "string"}},
            "birth_date": {"type": ["string", "null"], "format": "date"},
            "sex": {"type": ["string", "null"], "enum": ["female", "male", "other", "unknown", None]},
        },
    },
    "NewPatient": {
        "type": "object",
        "required": ["identifier"],
        "description": "family_name and/or given_names (kept apart for FHIR, HL7 and DICOM); "
                       "or name, one text that is kept as it is and never split.",
        "properties": {
            "identifier": {"type": "string"},
            "family_name": {"type": "string"},
            "given_names": {"type": "string", "description": "As typed, e.g. 'Anna Maria'."},
            "name": {"type": "string"},
            "birth_date": {"type": "string", "format": "date"},
            "sex": {"type": "string", "enum": ["female", "male", "other", "unknown"]},
        },
    },
    "Result": {
        "type": "object",
        "description": "One image's result (see docs/interfaces.md).",
        "required": ["task", "verdict", "findings", "quality"],
        "properties": {
            "input": {"type": "string"},
            "task": {"type": ["string", "null"]},
            "verdict": {"type": "string", "enum": ["referable", "non_referable", "ungradable"]},
            "score": {"type": ["number", "null"]},
            "findings": {"type": "array", "items": {"type": "object"}},
            "quality": {"type": "object"},
            "model": {"type": ["object", "null"]},
            "backend": {"type": ["string", "null"]},
            "laterality": {"type": ["string", "null"]},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "source": {
                "type": "object",
                "description": "The DICOM film screened: study_uid, series_uid, sop_uid, "
                               "sop_class_uid, accession_number, modality (absent for photos).",
                "additionalProperties": {"type": "string"},
            },
            "reader_required": {
                "type": "string",
                "description": "Present when the model's result is not reliable for this patient "
                               "(e.g. outside the ages it was trained on): a clinician must read "
                               "the image, and the screening is not cleared.",
            },
        },
    },
    "Screening": {
        "type": "object",
        "required": ["id", "patient", "verdict", "action", "results", "intended_use"],
        "properties": {
            "id": {"type": "integer"},
            "patient": {"$ref": "#/components/schemas/Patient"},
            "created": {"type": "string"},
            "verdict": {"type": "string",
                        "enum": ["referable", "non_referable", "retake", "ungradable"]},
            "action": {"type": "string", "examples": ["Refer to an eye doctor"]},
            "priority": {"type": ["integer", "number", "null"]},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
            "sign_off": {"type": ["object", "null"]},
            "intended_use": {"type": "string"},
            "links": {"type": "object"},
        },
    },
    "Retake": {
        "type": "object",
        "required": ["code", "message", "retakes"],
        "properties": {
            "code": {"const": "retake"},
            "message": {"type": "string"},
            "retakes": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "backends", "queue", "queue_depth"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "version": {"type": "string"},
            "models": {"type": "array", "items": {"type": "object"}},
            "backends": {"type": "array", "items": {"type": "string"}},
            "model_error": {"type": ["object", "null"]},
            "queue": {"type": "array", "items": {"type": "object", "required":
                      ["destination", "waiting", "parked"]}},
            "queue_depth": {"type": "integer"},
        },
    },
}


def _paths() -> dict[str, Any]:
    """Every API route: what it takes and answers."""
    upload = {"required": True, "content": {"multipart/form-data": {"schema": _UPLOAD}}}
    return {
        "/api/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI")}}},
        "/api/health": {"get": {
            "summary": "Back-ends in use and outbox depth", "operationId": "health",
            "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "Health"),
                          **_errors(401)}}},
        "/api/csrf": {"get": {
            "summary": "CSRF token for session clients", "operationId": "csrf",
            "responses": {"200": _json({"type": "object", "required": ["csrf_token"],
                                        "properties": {"csrf_token": {"type": "string"}}},
                                       "Token"), **_errors(401)}}},
        "/api/patients": {
            "get": {"summary": "Find patients", "operationId": "findPatients",
                    "parameters": [{"name": "q", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": _json({"type": "object", "properties": {"patients": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Patient"}}}},
                        "Matches"), **_errors(401)}},
            "post": {"summary": "Register a patient", "operationId": "createPatient",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/NewPatient"}}}},
                     "responses": {"201": _json({"$ref": "#/components/schemas/Patient"},
                                                "Registered"), **_errors(400, 401, 409)}},
        },
        "/api/check": {"post": {
            "summary": "Instant gate: quality, and (with patient_id) the eye side and the DICOM "
                       "header's patient; no screening is stored", "operationId": "check",
            "requestBody": upload,
            "responses": {"200": _json({"type": "object", "required": [
                "gradable", "retakes", "warnings", "handles"]}, "Gate answer"),
                **_errors(400, 401, 404)}}},
        "/api/screenings": {"post": {
            "summary": "Screen uploaded images for a patient", "operationId": "createScreening",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                **_UPLOAD, "required": ["patient_id"],
                "properties": {**_UPLOAD["properties"], "patient_id": {"type": "integer"}}}}}},
            "responses": {"201": _json({"$ref": "#/components/schemas/Screening"}, "Screened"),
                          "422": _json({"anyOf": [{"$ref": "#/components/schemas/Retake"},
                                                  _ERROR]}, "Retake or refused"),
                          **_errors(400, 401, 404, 409)}}},
        "/api/screenings/{screening_id}": {"get": {
            "summary": "Read a screening", "operationId": "readScreening",
            "parameters": [_id_param("screening_id")],
            "responses": {"200": _json({"$ref": "#/components/schemas/Screening"}, "Screening"),
                          **_errors(401, 404)}}},
        "/api/screenings/{screening_id}/sign-off": {"post": {
            "summary": "Confirm or overrule (clinicians)", "operationId": "signOff",
            "parameters": [_id_param("screening_id")],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["decision"],
                "properties": {"decision": {"type": "string", "enum": ["confirm", "overrule"]},
                               "note": {"type": "string"},
                               "verdict": {"type": "string"}}}}}},
            "responses": {"200": _json({"$ref": "#/components/schemas/Screening"}, "Signed"),
                          **_errors(400, 401, 403, 404)}}},
    }


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Screening kiosk API",
            "version": __version__,
            "description": "Fundus and chest X-ray screening results. Reference models trained "
            "on small public data sets; not for clinical decisions.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Per-user token from the account page."},
                "session": {"type": "apiKey", "in": "cookie", "name": "kiosk_session",
                            "description": "Browser session; writes need X-CSRFToken."},
            },
        },
    }
