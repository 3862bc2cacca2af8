"""Text on the referral slip in every script a clinic's names come in.

The PDF's own Helvetica covers Western European text only; a Vietnamese, Devanagari or Amharic
name printed with it comes out as boxes. Each run of text is drawn with a font that has its
letters: Helvetica for plain Latin-1 (which also keeps such text searchable in the file), Noto
Sans for other Latin (Vietnamese), Noto Sans Devanagari and Noto Sans Ethiopic (Debian's
fonts-noto-core, installed by scripts/setup.sh), embedded in the PDF as subsets. Runs in a Noto
font are shaped by HarfBuzz (uharfbuzz), so Devanagari conjuncts and vowel signs print as the
joined glyphs a reader expects, not as the broken letters of a one-glyph-per-letter layout.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import ShapedStr, TTFont, shapeStr
from reportlab.pdfgen.canvas import Canvas

NOTO = Path("/usr/share/fonts/truetype/noto")
#: script -> (regular file, bold file) under NOTO
FILES = {
    "latin": ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
    "devanagari": ("NotoSansDevanagari-Regular.ttf", "NotoSansDevanagari-Bold.ttf"),
    "ethiopic": ("NotoSansEthiopic-Regular.ttf", "NotoSansEthiopic-Bold.ttf"),
}
BLOCKS = {"devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
          "ethiopic": ((0x1200, 0x139F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F))}


def script_of(char: str) -> str:
    """ "base" (Helvetica), "latin", "devanagari" or "ethiopic" for one character."""
    point = ord(char)
    for script, blocks in BLOCKS.items():
        if any(low <= point <= high for low, high in blocks):
            return script
    try:
        char.encode("cp1252")
        return "base"
    except UnicodeEncodeError:
        return "latin"


def runs(text: str) -> Iterator[tuple[str, str]]:
    """(script, text) runs; spaces and punctuation stay with the run they are in."""
    current, chunk = "", ""
    for char in text:
        script = script_of(char)
        if char.isspace() or (current and script == "base" and not char.isalnum()):
            script = current or script
        if script != current and chunk:
            yield current, chunk
            chunk = ""
        current, chunk = script, chunk + char
    if chunk:
        yield current, chunk


@functools.cache
def font_name(script: str, bold: bool) -> str:
    """The registered font for a script (Helvetica when the Noto file is missing)."""
    base = "Helvetica-Bold" if bold else "Helvetica"
    if script == "base":
        return base
    path = NOTO / FILES[script][1 if bold else 0]
    if not path.exists():
        return base
    name = f"Kiosk-{script}-{'bold' if bold else 'regular'}"
    pdfmetrics.registerFont(TTFont(name, str(path)))
    return name


def shaped(chunk: str, font: str, size: float) -> tuple[str, float]:
    """The run as it is drawn (HarfBuzz's glyphs for an embedded font) and its width in points."""
    if font.startswith("Helvetica"):
        return chunk, pdfmetrics.stringWidth(chunk, font, size)
    glyphs = shapeStr(chunk, font, size)
    if isinstance(glyphs, ShapedStr):
        return glyphs, sum(g.x_advance for g in glyphs.__shapeData__) * size / 1000
    return chunk, pdfmetrics.stringWidth(chunk, font, size)


def width(text: str, size: float, bold: bool = False) -> float:
    """The printed width of a text in points."""
    return sum(shaped(chunk, font_name(script, bold), size)[1] for script, chunk in runs(text))


def draw(canvas: Canvas, x: float, y: float, text: str, size: float, bold: bool = False) -> None:
    """Draw one line, each run in a font that has its letters, shaped."""
    for script, chunk in runs(text):
        font = font_name(script, bold)
        glyphs, advance = shaped(chunk, font, size)
        line = canvas.beginText(x, y)
        line.setFont(font, size)
        line.textOut(glyphs)
        if glyphs is chunk:
            canvas.drawText(line)
        else:  # joined glyphs have no letters of their own: the PDF says which letters they show
            canvas.addLiteral(f"/Span <</ActualText <FEFF{chunk.encode('utf-16-be').hex()}>>> BDC")
            canvas.drawText(line)
            canvas.addLiteral("EMC")
        x += advance


def wrap(text: str, size: float, room: float, bold: bool = False) -> list[str]:
    """The text cut into lines that fit the room (a word longer than the room is cut too)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if width(trial, size, bold) <= room:
            line = trial
            continue
        if line:
            lines.append(line)
        while width(word, size, bold) > room and len(word) > 1:
            cut = max(1, int(len(word) * room / width(word, size, bold)) - 1)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    return [*lines, line] if line else lines
