"""The field-of-view detector against the 40 DRIVE field-of-view masks (mean IoU >= 0.95)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builders import fundus_phantom
from conftest import shared
from PIL import Image as PILImage

from kiosk.pixels.fov import FieldOfView, find_field_of_view


def _pairs(drive: Path) -> list[tuple[Path, Path]]:
    """(photograph, mask) for every DRIVE image in both splits."""
    pairs = []
    for split in ("training", "test"):
        for image in sorted((drive / split / "images").glob("*.png")):
            pairs.append((image, drive / split / "mask" / image.name.replace(".png", "_mask.png")))
    return pairs


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_mean_iou_over_all_40_drive_masks_is_at_least_095() -> None:
    pairs = _pairs(shared("fundus", "drive"))
    assert len(pairs) == 40
    scores = []
    for image_path, mask_path in pairs:
        rgb = np.asarray(PILImage.open(image_path).convert("RGB"))
        truth = np.asarray(PILImage.open(mask_path).convert("L")) > 127
        fov = find_field_of_view(rgb)
        assert fov is not None, image_path.name
        scores.append(_iou(fov.mask(truth.shape), truth))
    assert np.mean(scores) >= 0.95, f"mean IoU {np.mean(scores):.3f}"
    assert min(scores) >= 0.85, f"worst IoU {min(scores):.3f}"


def test_phantom_disc_is_found_where_it_was_drawn() -> None:
    rgb = fundus_phantom(256)
    fov = find_field_of_view(rgb)
    assert fov is not None
    assert abs(fov.cx - 128) < 4 and abs(fov.cy - 128) < 4
    assert abs(fov.radius - 0.9 * 128) < 6


def test_black_frame_has_no_field_of_view() -> None:
    assert find_field_of_view(np.zeros((200, 300, 3), np.uint8)) is None


def test_field_of_view_scales_with_the_image() -> None:
    fov = FieldOfView(10.0, 20.0, 5.0).scaled(2.0)
    assert (fov.cx, fov.cy, fov.radius) == (20.0, 40.0, 10.0)
