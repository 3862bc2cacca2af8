"""Every place the kiosk sends results to, in one table: its name, its setting, its sender.

The store writes one outbox item per configured destination and the sync worker opens each with
the class named here, so a new destination is one row (and its module under ``kiosk.sync``).
The sender is named, not imported: pynetdicom and hl7apy load only where they are configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.config import Config


@dataclass(frozen=True)
class DestinationKind:
    """One kind of destination: the setting that switches it on and the class that sends to it."""

    name: str
    setting: str  # the Config field with its address; empty means not configured
    sender: str  # "module:Class" of its kiosk.sync.base.Destination
    fleet: bool = False  # takes fleet reports (figures only): its sender has ``send_report``

    def configured(self, config: Config) -> bool:
        """True when the configuration gives this destination an address."""
        return bool(str(getattr(config, self.setting)).strip())


#: Every destination the kiosk can send to, in the order outbox items are written.
DESTINATIONS: tuple[DestinationKind, ...] = (
    DestinationKind("fhir", "fhir_url", "kiosk.sync.fhir:FhirDestination", fleet=True),
    DestinationKind("hl7", "hl7_address", "kiosk.sync.hl7:Hl7Destination"),
    DestinationKind("dicom", "pacs_address", "kiosk.sync.dicom:CStoreDestination"),
    DestinationKind("dicomweb", "dicomweb_url", "kiosk.sync.dicom:StowDestination"),
)

BY_NAME = {kind.name: kind for kind in DESTINATIONS}


def configured_destinations(config: Config) -> list[str]:
    """The names of the destinations switched on by the configuration (a non-empty address)."""
    return [kind.name for kind in DESTINATIONS if kind.configured(config)]


def fleet_destinations(config: Config) -> list[str]:
    """The configured destinations that take fleet reports (a FHIR MeasureReport)."""
    return [kind.name for kind in DESTINATIONS if kind.fleet and kind.configured(config)]
