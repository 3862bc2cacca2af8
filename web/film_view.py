"""A DICOM film as a picture the browser can show, beside its heat-map.

Browsers cannot show DICOM, so the film as received is rendered here: decoded by the kiosk's own
intake (the same windowing and MONOCHROME1 handling the model saw), at the heat-map's size so the
two line up when the clinician switches between them. Renders are kept for the last few films.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

from PIL import Image as PILImage

from kiosk.intake import read_image

#: The longest side of a rendered film without a heat-map to match (a tablet shows ~1000 px).
MAX_SIDE = 1024


def film_png(path: Path, size: tuple[int, int] | None) -> bytes:
    """The stored DICOM film as PNG bytes, at ``size`` (the heat-map's) or at most MAX_SIDE."""
    return _render(str(path), size)


@functools.lru_cache(maxsize=8)
def _render(path: str, size: tuple[int, int] | None) -> bytes:
    """Decode and encode once per film and size (a stored image never changes: its name is its
    sha256)."""
    want = max(size) if size else MAX_SIDE
    image = read_image(Path(path).read_bytes(), source=Path(path).name, kind_hint="cxr",
                       target_size=want)
    picture = PILImage.fromarray(image.pixels)
    if size is not None:
        picture = picture.resize(size, PILImage.Resampling.LANCZOS)
    elif max(picture.size) > MAX_SIDE:
        picture.thumbnail((MAX_SIDE, MAX_SIDE), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()


def picture_size(path: Path) -> tuple[int, int]:
    """The (width, height) of a stored PNG or JPEG, read from its header only."""
    with PILImage.open(path) as picture:
        return picture.size
