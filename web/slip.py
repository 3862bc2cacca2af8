"""The printable referral slip: one A4 PDF page made with reportlab (offline, no fonts to fetch)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfgen.canvas import Canvas

from kiosk.result import FindingResult, Result
from kiosk.store import Patient, Screening
from web import words

LEFT = 18 * mm
WIDTH = A4[0] - 2 * LEFT
UNCONFIRMED = "Kiosk result, not yet confirmed by a clinician"


def file_name(identifier: str, screening_id: int) -> str:
    """A safe file name for the slip of one screening."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", identifier)[:64]
    return f"referral-{safe}-{screening_id}.pdf"


def referral_slip(
    screening: Screening, patient: Patient, clinic_name: str, heatmaps: list[Path | None]
) -> bytes:
    """The slip of one screening: patient, what to do, per image findings, model, warning."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=True, pageCompression=0)  # text stays greppable
    canvas.setTitle(f"Referral slip - {clinic_name}")
    y = _header(canvas, screening, patient, clinic_name)
    y = _verdict(canvas, screening, y)
    canvas.setFont("Helvetica-Bold", 11)
    canvas.drawString(LEFT, y, "What the kiosk found, per image")
    y -= 8 * mm
    for index, result in enumerate(screening.results):
        heatmap = heatmaps[index] if index < len(heatmaps) else None
        y = _image_block(canvas, result, heatmap, y)
        if y < 60 * mm:
            canvas.showPage()
            y = A4[1] - 20 * mm
    _footer(canvas, screening)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _header(canvas: Canvas, screening: Screening, patient: Patient, clinic_name: str) -> float:
    """Clinic, patient and date; returns the next line's height."""
    top = A4[1] - 20 * mm
    canvas.setFont("Helvetica-Bold", 16)
    canvas.drawString(LEFT, top, f"{clinic_name} - screening referral slip")
    canvas.setFont("Helvetica", 11)
    lines = [
        f"Patient: {patient.name}    Id: {patient.identifier}",
        f"Born: {patient.birth_date or '-'}    Sex: {patient.sex or '-'}",
        f"Screened: {_when(screening.created)} UTC    Screening no. {screening.id}",
    ]
    for offset, line in enumerate(lines, start=1):
        canvas.drawString(LEFT, top - offset * 6 * mm, line)
    return top - 26 * mm


def _verdict(canvas: Canvas, screening: Screening, y: float) -> float:
    """The overall action in a box, as big as the page allows."""
    final = screening.sign_off.verdict if screening.sign_off else screening.verdict
    fill = {"refer": colors.HexColor("#b3261e"), "clear": colors.HexColor("#1b6e3a")}.get(
        words.tone(final), colors.HexColor("#8a5a00")
    )
    canvas.setFillColor(fill)
    canvas.rect(LEFT, y - 19 * mm, WIDTH, 19 * mm, stroke=0, fill=1)
    canvas.setFillColor(colors.white)
    canvas.setFont("Helvetica-Bold", 18)
    canvas.drawString(LEFT + 4 * mm, y - 9 * mm, words.headline(final, screening.results)[:60])
    canvas.setFont("Helvetica", 10)
    who = "Decided by the clinician" if screening.sign_off else UNCONFIRMED
    canvas.drawString(LEFT + 4 * mm, y - 15 * mm, who)
    canvas.setFillColor(colors.black)
    return y - 27 * mm


def _image_block(canvas: Canvas, result: Result, heatmap: Path | None, y: float) -> float:
    """One eye or film: its action, findings and the heat-map thumbnail."""
    canvas.setFont("Helvetica-Bold", 13)
    title = words.image_title(result)
    canvas.drawString(LEFT, y, f"{title}: {words.image_line(result)}"[:95])
    canvas.setFont("Helvetica", 10)
    text_y = y - 6 * mm
    text_width = WIDTH - 48 * mm
    for line in [words.model_line(result), *map(_finding_line, result.get("findings", []))]:
        for part in simpleSplit(line, "Helvetica", 10, text_width):
            canvas.drawString(LEFT + 4 * mm, text_y, part)
            text_y -= 5 * mm
    if heatmap is not None and heatmap.exists():
        size = 40 * mm
        canvas.drawImage(
            _thumbnail(heatmap), LEFT + WIDTH - size, y - size + 4 * mm, size, size,
            preserveAspectRatio=True,
        )
        text_y = min(text_y, y - size)
    return text_y - 8 * mm


def _thumbnail(path: Path) -> ImageReader:
    """A small JPEG of the heat-map (embedded as is: keeps the slip small)."""
    from PIL import Image as PILImage

    with PILImage.open(path) as picture:
        small = picture.convert("RGB")
        small.thumbnail((480, 480))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    buffer.seek(0)
    return ImageReader(buffer)


def _finding_line(finding: FindingResult) -> str:
    """ "Referable DR: 82% (threshold 23%) - positive; PPV 31%, NPV 98%" """
    sign = "positive" if finding.get("positive") else "negative"
    return (
        f"{finding.get('display') or finding.get('label')}: {words.percent(finding.get('probability'))}"
        f" (threshold {words.percent(finding.get('threshold'))}) - {sign};"
        f" PPV {words.percent(finding.get('ppv'))}, NPV {words.percent(finding.get('npv'))}"
    )


def _footer(canvas: Canvas, screening: Screening) -> None:
    """Referral box, model, sign-off and the intended-use warning at the foot of the page."""
    models = sorted({f"{model['id']} {model['version']}" for r in screening.results
                     if (model := r.get("model")) is not None})
    y = 30 * mm
    canvas.setFont("Helvetica", 10)
    canvas.drawString(LEFT, y + 14 * mm, "Referred to: ______________________   Date: ___________"
                      "   Signature: ______________")
    canvas.setFont("Helvetica", 9)
    canvas.drawString(LEFT, y, f"Model: {', '.join(models) or '-'}")
    sign_off = screening.sign_off
    if sign_off:
        canvas.drawString(LEFT, y - 5 * mm, f"Clinician: {_sign_off_line(sign_off)}")
    else:
        canvas.drawString(LEFT, y - 5 * mm, "Not yet confirmed by a clinician.")
    canvas.setFont("Helvetica-Bold", 9)
    canvas.drawString(LEFT, y - 11 * mm, words.INTENDED_USE_WARNING)


def _sign_off_line(sign_off: Any) -> str:
    """Who signed off, how, and the note."""
    get = sign_off.get if isinstance(sign_off, dict) else lambda k, d=None: getattr(sign_off, k, d)
    return f"{get('clinician', '-')} {get('decision', '')}: {get('note', '')}"[:110]


def _when(value: Any) -> str:
    """A timestamp as "2026-11-29 10:42"."""
    text = value.isoformat(sep=" ") if hasattr(value, "isoformat") else str(value)
    return text[:16]
