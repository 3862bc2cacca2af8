"""Moved to :mod:`kiosk.pixels.fov` (intake needs it too); this name stays only until
``kiosk/framing.py`` and ``kiosk/preprocess.py`` import ``kiosk.pixels.fov`` (issue 15)."""

from kiosk.pixels.fov import FieldOfView, find_field_of_view, retina_mask

__all__ = ["FieldOfView", "find_field_of_view", "retina_mask"]
