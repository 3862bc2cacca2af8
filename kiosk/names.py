"""A person's name kept in its parts, from intake to every writer (issue 18, point 1).

A name arrives structured (a DICOM PN ``Family^Given^Middle^Prefix^Suffix`` with its ideographic
and phonetic groups after ``=``, or the web form's family and given fields) and each writer
sends the parts in its own shape: DICOM PN, HL7 XPN, FHIR HumanName. A name the kiosk only ever
had as one line of text (patients registered before 2026-12) stays text: it is never split by
guessing which word is the family name. A single word is the person's one name, and DICOM and
HL7 put it in the family component, as FHIR does here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: DICOM PN delimiters, which no component may contain (PN has no escape).
_PN_DELIMITERS = str.maketrans({"^": " ", "=": " ", "\\": " "})


@dataclass(frozen=True)
class NameParts:
    """One representation of a name: the family name, given names in order, prefix, suffix."""

    family: str = ""
    given: tuple[str, ...] = ()
    prefix: str = ""
    suffix: str = ""

    def __bool__(self) -> bool:
        return bool(self.family or self.given or self.prefix or self.suffix)

    def written(self) -> str:
        """The parts as a line, given names first (``Dr Mary Ann van der Berg Jr``)."""
        return " ".join(p for p in (self.prefix, *self.given, self.family, self.suffix) if p)


@dataclass(frozen=True)
class PersonName:
    """A person's name: its alphabetic parts, and the ideographic and phonetic ones if any.

    ``text`` is the name as people write it, where the kiosk was told or wrote it down (or all
    it has, for a name that was never split: then ``parts`` is empty); without it the name is
    written given names first, with the ideographic form after it.
    """

    parts: NameParts = NameParts()
    text: str = ""
    ideographic: NameParts = NameParts()
    phonetic: NameParts = NameParts()

    @property
    def structured(self) -> bool:
        """Whether the kiosk knows which part is which (False: text only)."""
        return bool(self.parts or self.ideographic or self.phonetic)

    @property
    def display(self) -> str:
        """The name as the result page, worklist and slip show it."""
        if self.text:
            return self.text
        shown = self.parts.written()
        if self.ideographic:
            # ideographic names are written family name first
            written = " ".join(p for p in (self.ideographic.family, *self.ideographic.given) if p)
            shown = f"{shown} ({written})" if shown else written
        return shown or self.phonetic.written()

    def __str__(self) -> str:
        return self.display


def _clean(value: str) -> str:
    return " ".join(value.split())


def from_text(text: str) -> PersonName:
    """A name known only as text: one word is the person's one name, more stay unsplit."""
    text = _clean(text)
    if len(text.split()) == 1:
        return PersonName(NameParts(family=text), text=text)
    return PersonName(text=text)


def from_parts(family: str, given: str | list[str] | tuple[str, ...] = (), *, prefix: str = "",
               suffix: str = "", text: str = "") -> PersonName:
    """A name from its parts as a person typed them (given names as one string or a list)."""
    names = [given] if isinstance(given, str) else list(given)
    parts = NameParts(_clean(family), tuple(g for g in (_clean(n) for n in names) if g),
                      _clean(prefix), _clean(suffix))
    return PersonName(parts, text=_clean(text))


def _group_from_pn(group: str) -> NameParts:
    family, given, middle, prefix, suffix = [*group.split("^"), "", "", "", "", ""][:5]
    return NameParts(family.strip(), tuple(n for n in (given.strip(), middle.strip()) if n),
                     prefix.strip(), suffix.strip())


def from_dicom(value: str) -> PersonName:
    """A name from a DICOM PN value (``Family^Given^Middle^Prefix^Suffix=ideographic=phonetic``)."""
    groups = [*str(value or "").split("="), "", ""][:3]
    parts, ideographic, phonetic = (_group_from_pn(g) for g in groups)
    return PersonName(parts, ideographic=ideographic, phonetic=phonetic)


def _group_to_pn(group: NameParts) -> str:
    given = group.given[0] if group.given else ""
    middle = " ".join(group.given[1:])
    parts = [group.family, given, middle, group.prefix, group.suffix]
    return "^".join(_clean(p.translate(_PN_DELIMITERS)) for p in parts).rstrip("^")


def to_dicom(name: PersonName) -> str:
    """The DICOM PN value: components and groups; a text-only name as its family component.

    A family-only name is written ``Family^`` (a trailing caret is allowed), so that no reader
    takes it for a name whose carets were forgotten (highdicom refuses a PN without one).
    """
    if not name.structured:
        alphabetic = _clean(name.text.translate(_PN_DELIMITERS))
        return f"{alphabetic}^" if alphabetic else ""
    groups = [_group_to_pn(g) for g in (name.parts, name.ideographic, name.phonetic)]
    if groups[0] and "^" not in groups[0]:
        groups[0] += "^"
    return "=".join(groups).rstrip("=")


def group_to_text(group: NameParts) -> str:
    """One group as a PN fragment for the store (``Family^Given^Middle^Prefix^Suffix``)."""
    return _group_to_pn(group)


def group_from_text(text: str) -> NameParts:
    """One group from the store's PN fragment."""
    return _group_from_pn(text or "")
