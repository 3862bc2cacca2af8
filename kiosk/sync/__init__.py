"""Exactly-once delivery of results from the outbox to the EHR (FHIR R4, HL7 v2) and the PACS
(C-STORE, STOW-RS). Destination modules import their heavy libraries only when configured."""

from __future__ import annotations

import importlib

from kiosk.config import Config
from kiosk.destinations import BY_NAME
from kiosk.store import Store
from kiosk.sync.base import Delivery, Destination
from kiosk.sync.worker import SyncReport, SyncWorker, backoff_s, worker_lock


def open_destinations(config: Config, names: list[str]) -> dict[str, Destination]:
    """The destination objects for the configured names."""
    opened: dict[str, Destination] = {}
    for name in names:
        module_name, class_name = BY_NAME[name].sender.split(":")
        opened[name] = getattr(importlib.import_module(module_name), class_name)(config)
    return opened


def make_worker(store: Store) -> SyncWorker:
    """A worker sending the store's outbox to every configured destination."""
    return SyncWorker(store, open_destinations(store.config, store.destinations), store.config)


__all__ = ["Delivery", "Destination", "SyncReport", "SyncWorker", "backoff_s",
           "make_worker", "open_destinations", "worker_lock"]
