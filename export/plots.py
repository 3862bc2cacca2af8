"""ROC and calibration plots as small PNGs, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

SIZE, MARGIN = 420, 56
Series = tuple[Sequence[float], Sequence[float], tuple[int, int, int], str]


def _to_pixel(x: float, y: float) -> tuple[float, float]:
    """Unit-square coordinates to pixels inside the axes."""
    span = SIZE - 2 * MARGIN
    return MARGIN + x * span, SIZE - MARGIN - y * span


def plot(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    points: Sequence[tuple[float, float, str]] = (),
) -> bytes:
    """Line plot on [0, 1] x [0, 1] with a dotted diagonal, a legend and labelled points; PNG bytes."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    low, high = _to_pixel(0, 0), _to_pixel(1, 1)
    draw.rectangle([low[0], high[1], high[0], low[1]], outline="black")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, y = _to_pixel(tick, 0)
        draw.line([x, y, x, y + 4], fill="black")
        draw.text((x - 10, y + 6), f"{tick:.2f}", fill="black")
        x, y = _to_pixel(0, tick)
        draw.line([x - 4, y, x, y], fill="black")
        draw.text((x - 32, y - 6), f"{tick:.2f}", fill="black")
    for step in range(0, 101, 2):
        draw.point(_to_pixel(step / 100, step / 100), fill=(150, 150, 150))
    for row, (xs, ys, colour, name) in enumerate(series):
        pixels = [_to_pixel(x, y) for x, y in zip(xs, ys, strict=True)]
        draw.line(pixels, fill=colour, width=2)
        if len(pixels) <= 30:  # a reliability diagram: mark each bin
            for px, py in pixels:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((MARGIN + 8, MARGIN + 6 + 14 * row), name, fill=colour)
    for x, y, label in points:
        px, py = _to_pixel(x, y)
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], outline="red", width=2)
        draw.text((px + 6, py + 4), label, fill="red")
    draw.text((MARGIN, 18), title, fill="black")
    draw.text((SIZE / 2 - 40, SIZE - 22), x_label, fill="black")
    draw.text((4, 34), y_label, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
