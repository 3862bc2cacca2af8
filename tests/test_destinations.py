"""The one table of sync destinations: what the store queues for and what the worker opens."""

from __future__ import annotations

import dataclasses
import importlib

from kiosk.config import Config, load_config
from kiosk.destinations import DESTINATIONS, configured_destinations


def test_only_destinations_with_an_address_are_configured_in_the_table_order() -> None:
    assert configured_destinations(load_config(env={})) == []
    config = load_config(env={}, pacs_address="PACS@127.0.0.1:4242", fhir_url="http://ehr/fhir",
                         hl7_address="  ")
    assert configured_destinations(config) == ["fhir", "dicom"]


def test_every_row_names_a_setting_and_a_sender_of_the_same_name() -> None:
    settings = {field.name for field in dataclasses.fields(Config)}
    for kind in DESTINATIONS:
        assert kind.setting in settings, kind
        module_name, class_name = kind.sender.split(":")
        sender = getattr(importlib.import_module(module_name), class_name)
        assert sender.name == kind.name, kind
        assert callable(getattr(sender, "send", None)) and callable(getattr(sender, "close", None))
    assert len({kind.name for kind in DESTINATIONS}) == len(DESTINATIONS)
