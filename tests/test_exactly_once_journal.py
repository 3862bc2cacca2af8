"""Exactly once for receivers that do not de-duplicate (issue 18, point 4).

A kill after the peer's acknowledgement but before the kiosk marked the item sent used to mean a
resend with the same identifiers: harmless for a peer that de-duplicates, a second copy for one
that does not (an HL7 interface without MSH-10 duplicate detection). The worker now notes the
intent and the acknowledgement in a per-destination journal around each send, and settles the
journal before the next pass. The figures over many kills are in docs/reliability.md
(tests/test_exactly_once.py measures them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from peers.fixtures import FhirPeer, free_port
from peers.mllp import MllpPeer
from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from store_helpers import screen

from kiosk.config import Config
from kiosk.errors import ConfigError
from kiosk.store import Store
from kiosk.sync import make_worker
from kiosk.sync.dicom import check_stow
from kiosk.sync.fhir import resource_id
from kiosk.sync.hl7 import Hl7Destination
from kiosk.sync.journal import SendJournal
from kiosk.sync.status import sync_status

ROOT = Path(__file__).resolve().parent.parent

#: A sync pass in a child process that dies (SIGKILL) the moment it would mark an item sent:
#: after the peer acknowledged it, before the store knows.
KILLED_BEFORE_THE_MARK = """
import os, signal, sys
from pathlib import Path
from kiosk.config import load_config
from kiosk.store import Store
from kiosk.sync import make_worker
Store.item_sent = lambda self, item_id: os.kill(os.getpid(), signal.SIGKILL)
config = load_config(env={}, data_dir=Path(sys.argv[1]), hl7_address=sys.argv[2],
                     fhir_url=sys.argv[3], min_free_disk_mb=1, sync_timeout_s=5.0)
make_worker(Store.open(config)).run_once()
"""


def _killed_before_the_mark(config: Config) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_MARK, str(config.data_dir),
                           config.hl7_address, config.fhir_url], cwd=ROOT, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]


def test_a_kill_between_the_hl7_ack_and_the_mark_sends_nothing_twice(
        config: Config, mllp_peer: MllpPeer) -> None:
    store = Store.open(replace(config, hl7_address=mllp_peer.address, min_free_disk_mb=1))
    screen(store, 801, identifier="ACK-801")
    store.close()
    before = mllp_peer.inbox.deliveries
    _killed_before_the_mark(store.config)
    assert mllp_peer.inbox.deliveries == before + 1  # the receiver has it and said AA
    store = Store.open(store.config)
    assert store.outbox_status()[0].waiting == 1  # the store never heard
    report = make_worker(store).run_once()
    arrived = mllp_peer.inbox.deliveries - before
    print(f"\n[ack, then kill] HL7 deliveries of one message: {arrived}; settled from the "
          f"journal: {report.settled}")
    assert arrived == 1, "resent: a receiver without duplicate detection files it twice"
    assert report.settled == 1 and store.outbox_status()[0].sent == 1
    store.close()


def test_a_kill_between_the_fhir_answer_and_the_mark_adds_no_version(
        config: Config, fhir_peer: FhirPeer) -> None:
    store = Store.open(replace(config, fhir_url=fhir_peer.base, min_free_disk_mb=1))
    screening = screen(store, 802, identifier="ACK-802")
    store.close()
    _killed_before_the_mark(store.config)
    report = make_worker(Store.open(store.config)).run_once()
    history = requests.get(f"{fhir_peer.base}/DiagnosticReport/"
                           f"{resource_id(screening, 'report')}/_history", timeout=30).json()
    assert report.settled == 1 and report.sent == 0
    assert fhir_peer.reports_by_screening()[screening.uid] == 1
    assert len(history.get("entry", [])) == 1  # not PUT again: one version


def test_journal_settles_acknowledged_items_and_names_those_in_doubt(config: Config) -> None:
    store = Store.open(replace(config, hl7_address="127.0.0.1:9", min_free_disk_mb=1))
    screen(store, 803, identifier="J-803")
    screen(store, 804, identifier="J-804")
    first, second = store.due_items(10)
    journal = SendJournal(config.data_dir, "hl7")
    journal.intent(first)
    journal.acknowledged(first)
    journal.intent(second)
    with journal.path.open("ab") as torn:  # a kill in the middle of a line
        torn.write(b"A 99")
    journal.close()
    worker = make_worker(store)
    assert worker.settle_journals() == 1
    assert store.get_item(first.id).state == "sent" and worker.in_doubt == {second.id}
    assert journal.path.read_bytes() == b""  # emptied once the store holds what it said
    store.close()


class _DuplicateSayingScp:
    """A PACS that answers a second C-STORE of a SOP Instance UID with 0x0111."""

    def __init__(self) -> None:
        self.ae = AE(ae_title="DUPSCP")
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.held: set[str] = set()
        self.port = free_port()
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: evt.Event) -> Dataset:
        uid = str(getattr(event.request, "AffectedSOPInstanceUID", ""))
        answer = Dataset()
        answer.Status = 0x0111 if uid in self.held else 0x0000
        self.held.add(uid)
        return answer


def test_a_pacs_saying_duplicate_sop_instance_on_a_resend_counts_as_delivered(
        config: Config) -> None:
    scp = _DuplicateSayingScp()
    try:
        store = Store.open(replace(config, pacs_address=f"DUPSCP@127.0.0.1:{scp.port}",
                                   min_free_disk_mb=1, sync_timeout_s=5.0))
        screen(store, 805, identifier="DUP-805")
        assert make_worker(store).run_once().sent == 1
        with store.db.write() as conn:  # as after a crash before the mark: sent again
            conn.execute("UPDATE outbox SET state = 'waiting'")
        report = make_worker(store).run_once()
        assert report.sent == 1 and not store.parked_items(), store.parked_items()
        assert len(scp.held) == 3
        store.close()
    finally:
        if scp.server is not None:
            scp.server.shutdown()


@pytest.mark.parametrize("status", [409, 200])
def test_a_stow_answer_of_only_duplicates_counts_as_delivered(status: int) -> None:
    answer = requests.Response()
    answer.status_code = status
    answer._content = (b'{"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", '
                       b'"Value": [273]}}]}}')  # 273 = 0x0111 Duplicate SOP Instance
    check_stow(answer)


#: A sync pass that dies after the HL7 message went out, before the ACK was read.
KILLED_BEFORE_THE_ACK = """
import os, signal, sys
from pathlib import Path
from kiosk.config import load_config
from kiosk.store import Store
from kiosk.sync import hl7, make_worker
hl7._read_frame = lambda conn: os.kill(os.getpid(), signal.SIGKILL)
config = load_config(env={}, data_dir=Path(sys.argv[1]), hl7_address=sys.argv[2],
                     min_free_disk_mb=1, sync_timeout_s=5.0)
make_worker(Store.open(config)).run_once()
"""


@pytest.mark.parametrize("park", [False, True], ids=["resend", "park"])
def test_a_message_left_in_doubt_is_resent_or_parked_for_a_person(
        config: Config, mllp_peer: MllpPeer, park: bool) -> None:
    store = Store.open(replace(config, hl7_address=mllp_peer.address, min_free_disk_mb=1,
                               hl7_in_doubt="park" if park else "resend"))
    screen(store, 806 + park, identifier=f"DOUBT-{park}")
    store.close()
    before = mllp_peer.inbox.deliveries
    done = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_ACK, str(config.data_dir),
                           mllp_peer.address], cwd=ROOT, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -9 and mllp_peer.inbox.deliveries == before + 1
    store = Store.open(store.config)
    report = make_worker(store).run_once()
    assert report.in_doubt == 1
    if park:  # a receiver without duplicate detection: a person checks, nothing goes twice
        assert mllp_peer.inbox.deliveries == before + 1 and report.parked == 1
        [parked] = sync_status(store)["parked"]
        assert parked["kind"] == "in_doubt" and "may already hold it" in parked["error"]
    else:  # the same MSH-10 again: a de-duplicating receiver keeps one
        assert mllp_peer.inbox.deliveries == before + 2 and report.sent == 1
    store.close()


def test_only_what_went_out_is_in_doubt(config: Config) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # takes the message, never acknowledges
    got: list[bytes] = []

    def listen() -> None:
        conn, _ = silent.accept()
        with conn:
            got.append(conn.recv(65536))
            conn.recv(1)  # until the kiosk gives up and closes

    threading.Thread(target=listen, daemon=True).start()
    closed = free_port()
    store = Store.open(replace(config, hl7_address=f"127.0.0.1:{closed}", min_free_disk_mb=1,
                               sync_timeout_s=1.0, hl7_in_doubt="park"))
    screen(store, 808, identifier="NOANSWER-808")
    worker = make_worker(store)
    assert worker.run_once().retrying == 1 and not worker.in_doubt  # never connected
    worker.destinations["hl7"].address = ("127.0.0.1", silent.getsockname()[1])  # type: ignore[attr-defined]
    with store.db.write() as conn:
        conn.execute("UPDATE outbox SET next_attempt = 0")
    assert worker.run_once().retrying == 1 and got and got[0].startswith(b"\x0bMSH|")
    with store.db.write() as conn:
        conn.execute("UPDATE outbox SET next_attempt = 0")
    report = worker.run_once()  # it went out, no answer came: a person checks the receiver
    assert report.in_doubt == 1 and report.parked == 1
    silent.close()
    store.close()


def test_the_in_doubt_setting_is_resend_or_park(config: Config) -> None:
    with pytest.raises(ConfigError):
        Hl7Destination(replace(config, hl7_address="127.0.0.1:9", hl7_in_doubt="maybe"))
    assert Hl7Destination(replace(config, hl7_address="127.0.0.1:9",
                                  hl7_in_doubt="park")).park_in_doubt
