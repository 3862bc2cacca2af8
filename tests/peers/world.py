"""A kiosk and every peer behind fault-injecting proxies, and a census of what each peer holds.

The N screenings are recorded once per test session through ``Store.record_screening`` (with
every destination configured, so each has its outbox rows), then copied for each test with the
SQLite backup API and given fresh screening uids, so the session-wide peers can tell the tests'
results apart.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from kiosk.config import Config
from kiosk.store import Store
from kiosk.store.outbox import idempotency_key
from kiosk.sync.base import control_id, dicom_uid
from peers.faultproxy import FaultProxy
from peers.fixtures import FhirPeer, OrthancPeer
from peers.mllp import MllpPeer

PLACEHOLDERS = {"fhir_url": "http://127.0.0.1:9/fhir", "hl7_address": "127.0.0.1:9",
                "pacs_address": "ORTHANC@127.0.0.1:9", "dicomweb_url": "http://127.0.0.1:9/dw"}


def record_template(config: Config, count: int) -> Path:
    """Record ``count`` two-eye screenings into a fresh data folder; returns the folder."""
    from store_helpers import screen

    store = Store.open(replace(config, min_free_disk_mb=1, **PLACEHOLDERS))
    for seed in range(count):
        screen(store, 10_000 + seed, identifier=f"EO-{seed:04d}")
    store.close()
    return config.data_dir


def copy_template(template: Path, target: Path) -> None:
    """A copy of the template (backup API for the database) with fresh screening uids."""
    source = Store.open(Config(data_dir=template))
    source.backup(target / "kiosk.db")
    source.close()
    shutil.copytree(template / "images", target / "images")
    copy = Store.open(Config(data_dir=target))
    with copy.db.write() as conn:
        for (screening_id,) in conn.execute("SELECT id FROM screenings").fetchall():
            uid = uuid.uuid4().hex
            conn.execute("UPDATE screenings SET uid = ? WHERE id = ?", (uid, screening_id))
            for item_id, destination, status in conn.execute(
                    "SELECT id, destination, report_status FROM outbox WHERE screening_id = ?",
                    (screening_id,)).fetchall():
                conn.execute("UPDATE outbox SET idempotency_key = ? WHERE id = ?",
                             (idempotency_key(uid, destination, status), item_id))
    copy.close()


@dataclass
class World:
    """The peers, a proxy in front of each, and the kiosk configuration pointing at them."""

    fhir: FhirPeer
    mllp: MllpPeer
    cstore: OrthancPeer
    stow: OrthancPeer
    proxies: dict[str, FaultProxy] = field(default_factory=dict)

    def config(self, base: Config, **overrides: object) -> Config:
        """The kiosk's settings, every destination reached through its proxy."""
        port = {name: proxy.port for name, proxy in self.proxies.items()}
        return replace(
            base, min_free_disk_mb=1,
            fhir_url=f"http://127.0.0.1:{port['fhir']}/fhir",
            hl7_address=f"127.0.0.1:{port['hl7']}",
            pacs_address=f"{self.cstore.aet}@127.0.0.1:{port['dicom']}",
            dicomweb_url=f"http://127.0.0.1:{port['dicomweb']}/dicom-web", **overrides)

    def down(self) -> None:
        """Every destination refuses connections."""
        for proxy in self.proxies.values():
            proxy.down()

    def up(self) -> None:
        """Every destination is reachable again."""
        for proxy in self.proxies.values():
            proxy.up()

    def close(self) -> None:
        """Stop the proxies."""
        self.down()


def open_world(fhir: FhirPeer, mllp: MllpPeer, orthancs: tuple[OrthancPeer, OrthancPeer],
               odds: dict[str, float] | None = None, seed: int = 0,
               stall_s: float = 3.0, first: tuple[str, ...] = ()) -> World:
    """Proxies in front of the four peers (with the given fault odds)."""
    cstore, stow = orthancs
    world = World(fhir, mllp, cstore, stow)
    upstreams = {"fhir": ("127.0.0.1", int(fhir.base.split(":")[2].split("/")[0])),
                 "hl7": ("127.0.0.1", mllp.port), "dicom": ("127.0.0.1", cstore.dicom_port),
                 "dicomweb": ("127.0.0.1", int(stow.http.rsplit(":", 1)[1]))}
    for n, (name, upstream) in enumerate(upstreams.items()):
        world.proxies[name] = FaultProxy(upstream, odds=odds, seed=seed + n, stall_s=stall_s,
                                         first=first)
    return world


@dataclass
class Census:
    """How many copies of each expected result every peer holds (1 everywhere = exactly once)."""

    fhir_reports: list[int]
    hl7_messages: list[int]
    pacs_instances: dict[str, list[int]]
    extra: dict[str, int]

    def exactly_once(self) -> bool:
        """True when each result is held exactly once by each peer, and nothing else arrived."""
        counts = [*self.fhir_reports, *self.hl7_messages,
                  *(c for held in self.pacs_instances.values() for c in held)]
        return set(counts) == {1} and not any(self.extra.values())


def baseline(world: World) -> dict[str, int]:
    """Totals held by each peer before a test, to find anything extra afterwards."""
    return {"fhir_reports": world.fhir.total("DiagnosticReport"),
            "fhir_observations": world.fhir.total("Observation"),
            "hl7": len(world.mllp.inbox.messages),
            "dicom": sum(world.cstore.sop_uids().values()),
            "dicomweb": sum(world.stow.sop_uids().values())}


def census(world: World, store: Store, before: dict[str, int]) -> Census:
    """Count each expected result in each peer."""
    with store.db.read() as conn:
        uids = [row[0] for row in conn.execute("SELECT uid FROM screenings ORDER BY id")]
    reports = world.fhir.reports_by_screening()
    messages = world.mllp.inbox.messages
    expected_sops = [dicom_uid(uid, part, *rest) for uid in uids
                     for part, *rest in (("overlay", "0"), ("overlay", "1"),
                                         ("sr", "preliminary"))]
    pacs = {"dicom": world.cstore.sop_uids(), "dicomweb": world.stow.sop_uids()}
    after = baseline(world)
    extra = {
        "fhir_reports": after["fhir_reports"] - before["fhir_reports"] - len(uids),
        "fhir_observations": after["fhir_observations"] - before["fhir_observations"]
        - 2 * len(uids),
        "hl7": after["hl7"] - before["hl7"] - len(uids),
        "dicom": after["dicom"] - before["dicom"] - len(expected_sops),
        "dicomweb": after["dicomweb"] - before["dicomweb"] - len(expected_sops),
    }
    return Census(
        fhir_reports=[reports[uid] for uid in uids],
        hl7_messages=[int(control_id(idempotency_key(uid, "hl7", "preliminary")) in messages)
                      for uid in uids],
        pacs_instances={name: [held[sop] for sop in expected_sops] for name, held in pacs.items()},
        extra=extra)
