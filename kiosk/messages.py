"""The warnings the kiosk writes on results, each with a stable code and named parameters.

Results keep their warnings as English sentences: they are what the store keeps and what FHIR,
HL7 and DICOM SR carry. The kiosk knows no language tooling (web/ alone imports Flask-Babel), so
each sentence is made here from a template with a code, and ``read`` gives the code and the
parameters back from a stored sentence: web/messages.py translates by the code, and a sentence
that matches no template (an older result, a decoder's note) is shown as it is.
"""

from __future__ import annotations

import functools
import re
import string

#: code -> English template (str.format fields). A template never changes once results carry
#: it: a new wording is a new code, so that every stored sentence can still be read back.
TEMPLATES: dict[str, str] = {
    "outside_population_years": (
        "This model was trained on {population}; this patient is {years} years old. Its result "
        "is not reliable for this patient: a clinician must read the image."),
    "outside_population_months": (
        "This model was trained on {population}; this patient is {months} months old. Its result "
        "is not reliable for this patient: a clinician must read the image."),
    "other_kind": "The image is {found}, not {expected}: screened with {tasks}.",
    "age_unknown": ("The patient's age is not known, so both models were run ({titles}); give "
                    "the age for an answer from the right one."),
    "eye_not_photographed": "{eye} not photographed: {reason}",
    "uid_reused": (
        "This film's SOP Instance UID {uid} was screened before with different pixels "
        "(screening {earlier}): the sender reused the UID for another image. It was screened as "
        "a new film; check which image the earlier result is about."),
    "identity_confirmed": "Checked by {user}: {warning}",
}


def say(code: str, **params: object) -> str:
    """The English sentence of a code with its parameters."""
    return TEMPLATES[code].format(**params)


def read(text: str) -> tuple[str, dict[str, str]] | None:
    """(code, parameters) of a sentence made by ``say``, or None for any other text."""
    for code, template in TEMPLATES.items():
        found = parse(template, text)
        if found is not None:
            return code, found
    return None


def parse(template: str, text: str) -> dict[str, str] | None:
    """The parameters a str.format template was filled with to make ``text`` (None: not made
    from it). Also reads the quality reasons' templates (kiosk.quality: "{side}")."""
    found = _pattern(template).fullmatch(text)
    return found.groupdict() if found else None


def fields(template: str) -> set[str]:
    """The parameter names of a str.format template."""
    return {name for _text, name, _spec, _conv in string.Formatter().parse(template) if name}


@functools.lru_cache(maxsize=256)
def _pattern(template: str) -> re.Pattern[str]:
    """A full-match pattern for a template: its text literal, each field a lazy group."""
    parts = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name:
            parts.append(f"(?P<{name}>.+?)")
    return re.compile("".join(parts), re.DOTALL)
