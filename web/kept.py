"""Images of a visit that passed the gate while another must be retaken: kept on disk (the
store's content-addressed files) and named in the store per user and patient
(``kiosk.store.visit_images``), so the nurse retakes only the bad image. They were named in the
session cookie, which every response rewrites: a request still in flight wrote an older list
back and the kept eyes were lost."""

from __future__ import annotations

from typing import Any

from flask_login import current_user

from kiosk.store import visit_images
from kiosk.visit import Offered, suffix_of
from web.services import services


def kept_images(patient_id: int) -> list[Offered]:
    """The images this user kept for this patient's visit."""
    store = services().store
    return [
        Offered(store.image_path(item["sha"]).read_bytes(), item["name"], item["laterality"],
                item.get("kind"), item.get("task"))
        for item in visit_images.get(store.db, current_user.username, patient_id)
    ]


def keep(patient_id: int, items: list[Offered]) -> None:
    """Keep gradable images for this patient's visit (replacing what was kept for it)."""
    store = services().store
    entries: list[dict[str, Any]] = []
    for item in items:
        sha = store.save_image(item.data, suffix_of(item.data, item.name))
        entries.append({"sha": sha, "name": item.name, "laterality": item.laterality,
                        "kind": item.kind, "task": item.task})
    visit_images.put(store.db, current_user.username, patient_id, entries)


def forget(patient_id: int) -> None:
    """Drop the kept images (the screening was recorded, or the nurse starts again)."""
    visit_images.drop(services().store.db, current_user.username, patient_id)


def merge(kept: list[Offered], new: list[Offered]) -> list[Offered]:
    """The visit's images, right eye first, then left, then films; a new photo of an eye
    replaces the kept one of that eye."""
    retaken = {(n.kind, n.laterality) for n in new if n.laterality is not None}
    visit = [k for k in kept if (k.kind, k.laterality) not in retaken] + new
    return sorted(visit, key=lambda item: _EYE_ORDER.get(item.laterality or "", 2))


_EYE_ORDER = {"R": 0, "L": 1}
