"""The printable referral slip: A4 PDF pages made with reportlab (offline, fonts from the kiosk).

Every line is wrapped to the page (nothing runs off the edge), names print in their own script
(``web.slip_fonts``), times are the clinic's local time, and the document carries the date it was
made. A result the model was not made for says so in its own box.
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from flask_babel import gettext as _
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from kiosk.result import FindingResult, Result
from kiosk.store import Patient, Screening
from web import messages, words
from web import slip_fonts as fonts
from web.validation import site_calibration_line

LEFT = 18 * mm
WIDTH = A4[0] - 2 * LEFT
TOP = A4[1] - 20 * mm
#: Below this the footer (referral box, model, warning) is printed: the blocks stop above it.
FOOTER_TOP = 50 * mm
UNCONFIRMED = words.N_("Kiosk result, not yet confirmed by a clinician")
FILLS = {"refer": "#b3261e", "clear": "#1b6e3a", "read": "#5b2a86", "retake": "#8a5a00"}


def file_name(identifier: str, screening_id: int) -> str:
    """A safe file name for the slip of one screening."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", identifier)[:64]
    return f"referral-{safe}-{screening_id}.pdf"


def referral_slip(
    screening: Screening, patient: Patient, clinic_name: str, heatmaps: list[Path | None]
) -> bytes:
    """The slip of one screening: patient, what to do, per image findings, model, warning."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=0)  # plain text stays greppable
    canvas.setTitle(f"Referral slip - {clinic_name}")
    canvas.setCreator(clinic_name)
    y = _header(canvas, screening, patient, clinic_name)
    y = _verdict(canvas, screening, y)
    y = _lines(canvas, [_("What the kiosk found, per image")], y, size=11, bold=True) - 2 * mm
    for index, result in enumerate(screening.results):
        heatmap = heatmaps[index] if index < len(heatmaps) else None
        if y - _block_height(result, heatmap) < FOOTER_TOP:
            _footer(canvas, screening)
            canvas.showPage()
            y = TOP
        y = _image_block(canvas, result, heatmap, y)
    _footer(canvas, screening)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _lines(canvas: Canvas, texts: list[str], y: float, *, size: float = 10, bold: bool = False,
           x: float = LEFT, room: float = WIDTH) -> float:
    """Draw texts wrapped to the room; returns the height under the last line."""
    step = size * 1.35  # points of leading per line
    for text in texts:
        for part in fonts.wrap(text, size, room, bold):
            fonts.draw(canvas, x, y, part, size, bold)
            y -= step
    return y


def local_time(value: Any) -> str:
    """A stored (UTC) time as the clinic's local time: "2026-11-29 12:42 CAT"."""
    if not isinstance(value, datetime):
        return str(value)[:16]
    local = value.astimezone()
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".strip()


def _header(canvas: Canvas, screening: Screening, patient: Patient, clinic_name: str) -> float:
    """Clinic, patient and date; returns the next line's height."""
    y = _lines(canvas, [_("%(clinic)s - screening referral slip", clinic=clinic_name)], TOP,
               size=16, bold=True)
    sex = _(words.SEXES.get(patient.sex or "", patient.sex or "-"))
    return _lines(canvas, [
        _("Patient: %(name)s    Id: %(id)s", name=patient.name, id=patient.identifier),
        _("Born: %(born)s    Sex: %(sex)s", born=patient.birth_date or "-", sex=sex),
        _("Screened: %(when)s    Screening no. %(number)s", when=local_time(screening.created),
          number=screening.id),
        _("Printed: %(when)s", when=local_time(datetime.now().astimezone())),
    ], y - 1 * mm, size=11) - 3 * mm


def _verdict(canvas: Canvas, screening: Screening, y: float) -> float:
    """The overall action in a coloured box that grows with its text."""
    final = words.final_verdict(screening)
    lines = fonts.wrap(words.headline(final, screening.results), 16, WIDTH - 8 * mm, bold=True)
    height = (len(lines) * 7 + 9) * mm
    canvas.setFillColor(colors.HexColor(FILLS.get(words.tone(final, screening.results), "#8a5a00")))
    canvas.rect(LEFT, y - height, WIDTH, height, stroke=0, fill=1)
    canvas.setFillColor(colors.white)
    inner = _lines(canvas, lines, y - 8 * mm, size=16, bold=True, x=LEFT + 4 * mm,
                   room=WIDTH - 8 * mm)
    who = _("Decided by the clinician") if screening.sign_off else _(UNCONFIRMED)
    _lines(canvas, [who], inner - 1 * mm, size=10, x=LEFT + 4 * mm, room=WIDTH - 8 * mm)
    canvas.setFillColor(colors.black)
    return y - height - 8 * mm


def _block_texts(result: Result) -> list[str]:
    """The lines under an image's title: why, warnings, model, the clinician's figures."""
    texts = [words.why_line(result)] if words.why_line(result) else []
    texts += [messages.warning(w) for w in result.get("warnings", [])
              if w != result.get("reader_required")]
    texts.append(words.model_line(result))
    if site_calibration_line(result):
        texts.append(site_calibration_line(result))
    if not result.get("reader_required"):
        texts += [_finding_line(f) for f in result.get("findings", [])]
    return texts


def _block_height(result: Result, heatmap: Path | None) -> float:
    """How much room an image's block needs (to start a new page before it, not inside it)."""
    room = WIDTH - 48 * mm
    count = sum(len(fonts.wrap(t, 10, room)) for t in _block_texts(result)) + 3
    text = count * 5 * mm + (12 * mm if result.get("reader_required") else 0)
    return max(text, 44 * mm if heatmap is not None else 0.0)


def _image_block(canvas: Canvas, result: Result, heatmap: Path | None, y: float) -> float:
    """One eye or film: its action, why, warnings, findings and the heat-map thumbnail."""
    room = WIDTH - 48 * mm
    title = f"{words.image_title(result)}: {words.image_line(result)}"
    text_y = _lines(canvas, [title], y, size=12, bold=True, room=room)
    if result.get("reader_required"):
        text_y = _reader_box(canvas, messages.warning(str(result["reader_required"])), text_y,
                             room)
    text_y = _lines(canvas, _block_texts(result), text_y, size=10, x=LEFT + 4 * mm,
                    room=room - 4 * mm)
    if heatmap is not None and heatmap.exists():
        size = 40 * mm
        canvas.drawImage(_thumbnail(heatmap), LEFT + WIDTH - size, y - size + 4 * mm, size, size,
                         preserveAspectRatio=True)
        text_y = min(text_y, y - size)
    return text_y - 6 * mm


def _reader_box(canvas: Canvas, warning: str, y: float, room: float) -> float:
    """The out-of-population warning in its own colour: a clinician must read this image."""
    lines = fonts.wrap(_("A clinician must read this image.") + " " + warning, 10, room - 6 * mm,
                       True)
    height = (len(lines) * 5 + 3) * mm
    canvas.setFillColor(colors.HexColor("#f1e8fa"))
    canvas.setStrokeColor(colors.HexColor(FILLS["read"]))
    canvas.rect(LEFT, y - height + 3 * mm, room, height, stroke=1, fill=1)
    canvas.setFillColor(colors.HexColor(FILLS["read"]))
    after = _lines(canvas, lines, y - 1 * mm, size=10, bold=True, x=LEFT + 3 * mm,
                   room=room - 6 * mm)
    canvas.setFillColor(colors.black)
    return after - 2 * mm


def _thumbnail(path: Path) -> ImageReader:
    """A small JPEG of the heat-map (embedded as is: keeps the slip small)."""
    with PILImage.open(path) as picture:
        small = picture.convert("RGB")
        small.thumbnail((480, 480))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    buffer.seek(0)
    return ImageReader(buffer)


def _finding_line(finding: FindingResult) -> str:
    """ "Referable DR: 82% (refer above 23%) - positive; PPV 31%, NPV 98%" """
    sign = _("above the line") if finding.get("positive") else _("below the line")
    chance, line = words.chance_and_line(finding)
    return _("%(what)s: %(chance)s (refer above %(line)s) - %(sign)s; PPV %(ppv)s, NPV %(npv)s",
             what=messages.model_word(str(finding.get("display") or finding.get("label"))),
             chance=chance, line=line,
             sign=sign, ppv=words.percent(finding.get("ppv")), npv=words.percent(finding.get("npv")))


def _footer(canvas: Canvas, screening: Screening) -> None:
    """Referral box, model, sign-off and the intended-use warning at the foot of each page."""
    models = sorted({f"{model['id']} {model['version']}" for r in screening.results
                     if (model := r.get("model")) is not None})
    y = _lines(canvas, [_("Referred to: ______________________   Date: ___________   "
                          "Signature: ______________")], 44 * mm, size=10)
    sign_off = screening.sign_off
    who = (_("Clinician: %(line)s", line=_sign_off_line(sign_off)) if sign_off
           else _("Not yet confirmed by a clinician."))
    y = _lines(canvas, [_("Model: %(models)s", models=", ".join(models) or "-"), who],
               y - 3 * mm, size=9)
    _lines(canvas, [words.intended_use()], y - 1 * mm, size=9, bold=True)


def _sign_off_line(sign_off: Any) -> str:
    """Who signed off, how, when, and the note."""
    return (f"{words.decision_words(sign_off)}, {local_time(sign_off.signed)}"
            f"{': ' + sign_off.note if sign_off.note else ''}")
