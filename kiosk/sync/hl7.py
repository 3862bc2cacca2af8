"""HL7 v2.5 ORU^R01 over MLLP: one OBX per eye/film and finding, the same MSH-10 on every resend.

ACK handling (original acknowledgement mode): AA → delivered; AE (application error: the
content cannot be processed) → parked with the receiver's text; AR (application reject) →
parked when ERR-3 says the message type, event, processing id or version is unsupported
(table 0357, 200-203: no resend can change that), otherwise retried with backoff.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kiosk.config import Config
from kiosk.errors import ConfigError, SyncError
from kiosk.names import NameParts, PersonName
from kiosk.result import CodingDict, film_sources, film_study, model_words
from kiosk.store import Screening
from kiosk.sync.base import (
    Delivery,
    control_id,
    host_port,
    refused,
    unreachable,
)
from kiosk.tasks import codes_of

START, END = b"\x0b", b"\x1c\x0d"
SEX = {"female": "F", "f": "F", "male": "M", "m": "M", "other": "O", "o": "O"}
SIDE = {"L": "L^Left eye^HL70163", "R": "R^Right eye^HL70163"}
#: HL7 v2 coding-system names (table 0396) of the code systems the manifests use.
SYSTEMS = {"http://loinc.org": "LN", "http://snomed.info/sct": "SCT"}


def escape(text: object) -> str:
    """A value with HL7's delimiters escaped (``|^~\\&`` and line breaks)."""
    value = "" if text is None else str(text)
    for raw, escaped in (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("~", "\\R\\"),
                         ("&", "\\T\\"), ("\r", "\\X0D\\"), ("\n", "\\X0A\\")):
        value = value.replace(raw, escaped)
    return value


def hl7_time(moment: datetime) -> str:
    """A timestamp as HL7 DTM with its UTC offset."""
    return moment.strftime("%Y%m%d%H%M%S%z")


def _xpn(parts: NameParts) -> str:
    """XPN components 1-5: family^given^further given names^suffix^prefix."""
    fields = [parts.family, parts.given[0] if parts.given else "", " ".join(parts.given[1:]),
              parts.suffix, parts.prefix]
    return "^".join(escape(f) for f in fields).rstrip("^")


def person_name(name: PersonName) -> str:
    """PID-5: ``Family^Given^Further^Suffix^Prefix``; a text-only name as the family component
    (never split); ideographic and phonetic forms as repetitions marked I / P (XPN-8)."""
    if not name.structured:
        return escape(name.text)
    forms = [(name.parts, "A"), (name.ideographic, "I"), (name.phonetic, "P")]
    present = [(parts, code) for parts, code in forms if parts]
    if len(present) == 1 and present[0][1] == "A":
        return _xpn(name.parts)
    # with several forms, each says what it is: XPN-7 legal name, XPN-8 representation
    return "~".join(_xpn(parts) + "^" * (7 - len(_xpn(parts).split("^"))) + f"L^{code}"
                    for parts, code in present)


def _orders(s: Screening) -> tuple[str, str]:
    """(filler order number, accession numbers) of the screened films' orders (OBR-3, OBR-18)."""
    accessions = sorted({f["accession_number"] for f in film_sources(s.results)
                         if f.get("accession_number")})
    filler = escape(accessions[0]) if len(accessions) == 1 else ""
    return filler, "~".join(escape(a) for a in accessions)


def build_oru(delivery: Delivery, config: Config) -> str:
    """The ORU^R01 message for one outbox item, identical on every retry."""
    s = delivery.screening
    status = "F" if delivery.final else "P"
    signed = s.sign_off.signed if delivery.final and s.sign_off else s.created
    msh = ["MSH", "^~\\&", "KIOSK", escape(config.clinic_name), "EHR", "EHR", hl7_time(signed),
           "", "ORU^R01^ORU_R01", control_id(delivery.item.idempotency_key), "P", "2.5"]
    p = s.patient
    pid = ["PID", "1", "", f"{escape(p.identifier)}^^^{escape(config.patient_id_system)}^MR", "",
           person_name(p.person_name), "", (p.birth_date or "").replace("-", ""),
           SEX.get((p.sex or "").lower(), "U")]
    tasks = sorted({str(r.get("task", "")) for r in s.results})
    filler, accessions = _orders(s)
    # OBR-2 the kiosk's screening, OBR-3 the film's order (filler), OBR-18 its accession number
    obr = ["OBR", "1", escape(s.uid), filler, f"{escape('+'.join(tasks))}^AI screening^L", "",
           "", hl7_time(s.created)] + [""] * 10 + [accessions, "", "", ""] + [
           hl7_time(signed), "", "", status]
    segments = ["|".join(msh), "|".join(pid), "|".join(obr), *_study_segment(s),
                *_observations(s, status)]
    segments += _sign_off_segments(s, delivery.final, _next_obx(segments))
    if not all(segment.isascii() for segment in segments):
        # names in any script: the message is sent UTF-8 and says so (MSH-18)
        segments[0] = "|".join([*msh, "", "", "", "", "", "UNICODE UTF-8"])
    return "\r".join(segments) + "\r"


def _study_segment(s: Screening) -> list[str]:
    """ZDS (IHE radiology): the Study Instance UID of the film screened, when there is one."""
    film = film_study(s.results)
    return [f"ZDS|{escape(film['study_uid'])}^KIOSK^Application^DICOM"] if film else []


def _observations(s: Screening, status: str) -> list[str]:
    """One OBX for each image's verdict, then one per finding's probability."""
    rows: list[str] = []
    for position, result in enumerate(s.results):
        side = str(result.get("laterality") or "")
        model: Any = result.get("model") or {}
        device = f"{escape(model.get('id', ''))} {escape(model.get('version', ''))}"
        codes = codes_of(result)
        task = str(result.get("task"))
        own = f"{escape(task)}^{escape(result.get('title') or task)} verdict^L"
        code = _cwe(codes["result"], own)
        value = f"{escape(result.get('verdict'))}^{escape(result.get('verdict'))}^L"
        sub = str(position + 1)
        rows.append(_obx(_next_obx(rows), "CWE", code, sub, value, status, device, side))
        rows.append(f"NTE|1|L|{escape(model_words(result))}")
        if model.get("sha256"):  # the exact bundle (docs/change-control.md)
            rows.append(f"NTE|2|L|Model bundle sha256 {escape(model['sha256'])}")
        for finding in result.get("findings") or []:
            label = str(finding.get("label"))
            own = f"{escape(label)}^{escape(finding.get('display'))}^L"
            rows.append(_obx(_next_obx(rows), "NM", _cwe(codes["findings"].get(label), own),
                             sub, f"{float(finding.get('probability', 0)):.4f}", status, device,
                             side, "A" if finding.get("positive") else "N"))
    return rows


def _next_obx(rows: list[str]) -> int:
    """The set id of the next OBX (NTE segments between them are not counted)."""
    return sum(row.startswith("OBX|") for row in rows) + 1


def _cwe(standard: CodingDict | None, own: str) -> str:
    """A CWE with the standard code first and the kiosk's own as the alternate (or alone)."""
    if standard is None or standard["system"] not in SYSTEMS:
        return own
    return (f"{escape(standard['code'])}^{escape(standard['display'])}^"
            f"{SYSTEMS[standard['system']]}^{own}")


def _obx(set_id: int, kind: str, code: str, sub: str, value: str, status: str, device: str,
         side: str, flag: str = "") -> str:
    fields = ["OBX", str(set_id), kind, code, sub, value, "", "", flag, "", "", status, "", "",
              "", "", "", "AI^Artificial intelligence^L", device]
    if side in SIDE:
        fields += ["", "", SIDE[side]]
    return "|".join(fields)


def _sign_off_segments(s: Screening, final: bool, set_id: int) -> list[str]:
    if not final or s.sign_off is None:
        return []
    o = s.sign_off
    verdict = f"{escape(o.verdict)}^{escape(o.verdict)}^L"
    obx = ["OBX", str(set_id), "CWE", "clinician_verdict^Clinician verdict^L", "0", verdict,
           "", "", "", "", "", "F", "", "", hl7_time(o.signed), "", escape(o.clinician)]
    nte = ["NTE", "1", "L", escape(f"{o.decision} by {o.clinician}: {o.note}")]
    return ["|".join(obx), "|".join(nte)]


class Hl7Destination:
    """Sends ORU^R01 messages to an MLLP peer and reads its ACK."""

    name = "hl7"

    def __init__(self, config: Config):
        self.config = config
        self.address = host_port(config.hl7_address, "hl7_address")
        # A receiver without MSH-10 duplicate detection would file a resend twice: then a
        # message left in doubt by a crash is parked for a person instead (KIOSK_HL7_IN_DOUBT).
        if config.hl7_in_doubt not in ("resend", "park"):
            raise ConfigError("KIOSK_HL7_IN_DOUBT must be resend or park", code="bad_setting")
        self.park_in_doubt = config.hl7_in_doubt == "park"

    #: The worker's send journal notes the intent when connected, not before connecting.
    notes_intent = True

    def send(self, delivery: Delivery) -> None:
        """Send one message and act on the ACK."""
        message = build_oru(delivery, self.config)
        ack = self._exchange(message.encode("utf-8"), delivery.going_out)
        check_ack(ack, control_id(delivery.item.idempotency_key))

    def _exchange(self, message: bytes, going_out: Callable[[], None]) -> str:
        try:
            raw = socket.create_connection(self.address, timeout=self.config.sync_timeout_s)
            with raw, self._wrap(raw) as conn:
                going_out()  # connected: from here the receiver may get it (in doubt)
                conn.sendall(START + message + END)
                return _read_frame(conn).decode("utf-8", errors="replace")
        except (OSError, ssl.SSLError) as exc:
            raise unreachable("hl7", str(exc) or type(exc).__name__) from exc

    def _wrap(self, raw: socket.socket) -> socket.socket:
        if not self.config.hl7_tls:
            return raw
        context = ssl.create_default_context(cafile=self.config.tls_ca_file or None)
        return context.wrap_socket(raw, server_hostname=self.address[0])

    def close(self) -> None:
        """Nothing is held between messages."""


def _read_frame(conn: socket.socket) -> bytes:
    data = b""
    while END not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the connection closed before the ACK arrived")
        data += chunk
    return data[data.index(START) + 1 if START in data else 0: data.index(END)]


#: HL7 table 0357 conditions in an AR that no resend can change: unsupported message type,
#: event code, processing id, version id.
UNSUPPORTED = {"200", "201", "202", "203"}


def _error_condition(err: list[str]) -> str:
    """The table 0357 code of an ERR segment (ERR-3 in v2.5, ERR-1's fourth component before)."""
    if len(err) > 3 and err[3]:
        return err[3].split("^")[0]
    parts = err[1].split("^") if len(err) > 1 else []
    return parts[3].split("&")[0] if len(parts) > 3 else ""


def check_ack(ack: str, expected_id: str) -> None:
    """Return when the ACK accepts our message; raise SyncError otherwise."""
    segments = {line.split("|", 1)[0]: line.split("|") for line in ack.split("\r") if line}
    msa = segments.get("MSA")
    if msa is None or len(msa) < 3:
        raise unreachable("hl7", "the answer was not an ACK with an MSA segment")
    code, acked_id = msa[1], msa[2]
    text = msa[3] if len(msa) > 3 else ""
    if "ERR" in segments and len(segments["ERR"]) > 8:
        text = text or segments["ERR"][8]
    if acked_id != expected_id:
        raise SyncError(f"hl7 acknowledged {acked_id!r}, not {expected_id!r}", retryable=True)
    if code in ("AA", "CA"):
        return
    if code in ("AE", "CE"):
        raise refused("hl7", f"application error (AE): {text or 'no reason given'}")
    if code in ("AR", "CR"):
        condition = _error_condition(segments.get("ERR", []))
        words = f"application reject ({code}{' ' + condition if condition else ''}): " + (
            text or "no reason given")
        if condition in UNSUPPORTED:  # this message type/version is refused whatever we do
            raise refused("hl7", words, kind="rejected_permanent")
        # per message, not the whole receiver: the next message is still tried this pass
        raise SyncError(f"hl7 rejected it for now: {words}", code="rejected", retryable=True)
    raise SyncError(f"hl7 answered an unknown acknowledgement code {code!r}", retryable=True)
