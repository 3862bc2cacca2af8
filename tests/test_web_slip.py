"""The referral slip (issue 14.10): names in their own script, the clinic's local time, a real
document date, the out-of-population warning, every line on the page; read back with poppler."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from browser.web_support import web_config

from kiosk import names
from kiosk.store import Store
from web import slip, slip_fonts

NAMES = ["Nguyễn Thị Lan", "राहुल शर्मा", "አበበ ተስፋዬ"]
POPPLER = shutil.which("pdftotext") and shutil.which("pdffonts")
pytestmark = pytest.mark.skipif(not POPPLER, reason="poppler-utils is not installed")


def _result(laterality: str, *, reader: str | None = None) -> dict[str, Any]:
    finding = {"label": "referable_dr", "display": "Referable diabetic retinopathy",
               "probability": 0.0912, "threshold": 0.0904, "positive": True, "referable": True,
               "urgent": False, "ppv": 0.14, "npv": 0.98}
    result: dict[str, Any] = {
        "input": f"{laterality}.jpg", "task": "fundus-dr", "kind": "fundus",
        "title": "Eye photograph (diabetic retinopathy)", "verdict": "referable", "score": 0.09,
        "findings": [finding], "quality": {"gradable": True, "reasons": [], "measures": {}},
        "model": {"id": "fundus-dr", "version": "1.1.0", "sha256": "0" * 64,
                  "population": {"age_years": [18, 120], "description": "adults with diabetes"}},
        "backend": "onnxruntime-cpu", "laterality": laterality, "priority": 1,
        "referral": {"to": "an eye doctor", "urgency": "routine", "within": "within 3 months"},
        "timings_ms": {}, "warnings": [], "error": None}
    if reader:
        result["reader_required"] = reader
        result["warnings"] = [reader]
    return result


@pytest.fixture
def slip_pdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, Any]:
    monkeypatch.setenv("TZ", "Africa/Nairobi")  # UTC+3 all year, no daylight saving
    time.tzset()
    store = Store.open(web_config(tmp_path))
    try:
        patient = store.upsert_patient("SLIP-1", names.from_parts(*NAMES[0].split(" ", 1)),
                                       "1960-02-03", "female", actor="test")
        reader = ("This model was trained on adults with diabetes; this patient is 12 years old. "
                  "A clinician must read the image.")
        sha = store.save_image(b"\x89PNG not really", ".png")
        screening = store.record_screening(
            patient.id, [_result("R"), _result("L", reader=reader)], actor="test",  # type: ignore[list-item]
            image_shas=[sha, sha], heatmap_shas=[None, None])
        pdf = slip.referral_slip(screening, patient, " / ".join(NAMES), [None, None])
        return pdf, screening
    finally:
        store.close()
        monkeypatch.delenv("TZ")
        time.tzset()


def _text(pdf: bytes, tmp_path: Path, *options: str) -> str:
    path = tmp_path / "slip.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", *options, str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def test_names_in_every_script_are_printed_not_boxes(slip_pdf, tmp_path: Path) -> None:
    pdf, _ = slip_pdf
    text = _text(pdf, tmp_path)
    for name in NAMES:
        for word in name.split():
            assert word in text, word
    path = tmp_path / "slip.pdf"
    fonts = subprocess.run(["pdffonts", str(path)], check=True, capture_output=True,
                           text=True).stdout
    for family in ("NotoSans-", "NotoSansDevanagari", "NotoSansEthiopic"):
        assert family in fonts, fonts
    for name in NAMES:  # every letter has a glyph in the font chosen for it
        for script, chunk in slip_fonts.runs(name):
            font = slip_fonts.font_name(script, False)
            assert font.startswith("Kiosk-") if script != "base" else chunk.encode("cp1252")


def test_local_time_a_real_date_and_the_population_warning(slip_pdf, tmp_path: Path) -> None:
    pdf, screening = slip_pdf
    text = _text(pdf, tmp_path)
    local = screening.created.astimezone(ZoneInfo("Africa/Nairobi"))
    assert f"Screened: {local:%Y-%m-%d %H:%M} EAT" in text
    assert re.search(rb"/CreationDate \(D:" + date.today().strftime("%Y%m%d").encode(), pdf)
    assert b"D:20000101" not in pdf
    assert "A clinician must read this image" in text
    assert "9.1% (refer above 9.0%)" in text  # never "9% / 9%"


def test_every_line_stays_on_the_page(slip_pdf, tmp_path: Path) -> None:
    pdf, _ = slip_pdf
    boxes = _text(pdf, tmp_path, "-bbox")
    page_width = float(re.search(r'<page width="([\d.]+)"', boxes).group(1))  # type: ignore[union-attr]
    right_edges = [float(x) for x in re.findall(r'xMax="([\d.]+)"', boxes)]
    assert right_edges and max(right_edges) <= page_width - 10 * 72 / 25.4  # 10 mm margin


def _pdf_string_bytes(literal: bytes) -> bytes:
    """The bytes of a PDF literal string's body (octal and backslash escapes undone)."""
    return re.sub(rb"\\([0-7]{1,3}|.)", lambda m: bytes([int(m.group(1), 8)])
                  if m.group(1)[:1].isdigit() else m.group(1), literal, flags=re.S)


def _harfbuzz_glyphs(text: str) -> list[int]:
    """HarfBuzz's own glyphs for a Devanagari text in the slip's Noto font."""
    import uharfbuzz as hb

    path = slip_fonts.NOTO / slip_fonts.FILES["devanagari"][0]
    font = hb.Font(hb.Face(hb.Blob.from_file_path(str(path))))
    buffer = hb.Buffer()
    buffer.add_str(text)
    buffer.guess_segment_properties()
    hb.shape(font, buffer, {})
    return [info.codepoint for info in buffer.glyph_infos]


def test_devanagari_conjuncts_are_printed_shaped(slip_pdf) -> None:
    """राहुल शर्मा: हु and the reph of र्म are single joined glyphs, as HarfBuzz shapes them, and
    the PDF still reads back as the letters (ActualText). Unshaped, each letter was its own
    glyph and the conjuncts printed broken."""
    pdf, _ = slip_pdf
    spans = {bytes.fromhex(m.group(1).decode()).decode("utf-16-be"): m.group(2)
             for m in re.finditer(rb"/ActualText <FEFF([0-9a-f]+)>>> BDC(.*?)EMC", pdf, re.S)}
    run = next((text for text in spans if "शर्मा" in text), None)
    assert run is not None, f"no shaped Devanagari run in the slip: {list(spans)}"
    body = spans[run]
    drawn = b"".join(_pdf_string_bytes(s[1:-1]) for s in
                     re.findall(rb"\((?:\\.|[^\\)])*\)", body, re.S))
    expected = _harfbuzz_glyphs(run)  # the bold face joins the same letters
    assert len(drawn) == len(expected) < len(run), (run, drawn, expected)
