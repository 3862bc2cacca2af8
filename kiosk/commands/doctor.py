"""``kiosk doctor``: check the whole installation and say what to fix.

Each check prints ``OK``, ``WARN`` or ``FAIL`` with what it found and, when not OK, what to do
(``INFO`` only says what is not there and not asked for, e.g. a GPU back-end on a CPU box).
The exit status is 1 when any check fails, so a deployment script or a timer can act on it.
Peers that cannot be reached are a warning, not a failure: the kiosk works offline and results
wait in the outbox.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from kiosk.config import Config
from kiosk.errors import KioskError

UTC = timezone.utc  # datetime.UTC is Python 3.11+; JetPack 6 runs 3.10

#: Nothing this release writes can be older: a clock before this is wrong.
CLOCK_FLOOR = datetime(2026, 11, 1, tzinfo=UTC)
PEER_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    """One finding: its name, OK/WARN/FAIL (or INFO), what was found, and what to do about it."""

    name: str
    status: str
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Check:
    """A passed check."""
    return Check(name, "OK", detail)


def warn(name: str, detail: str, fix: str) -> Check:
    """Something to look at; the kiosk still works."""
    return Check(name, "WARN", detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    """Something that stops the kiosk from working safely."""
    return Check(name, "FAIL", detail, fix)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="skip loading the models on their back-end and contacting peers")


def check_data_folder(config: Config) -> list[Check]:
    """The data folder exists (or can be made) and takes a durable write."""
    folder = config.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".doctor-{os.getpid()}"
        with probe.open("wb") as handle:
            handle.write(b"probe")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        return [fail("data folder", f"{folder}: {exc.strerror or exc}",
                     f"create {folder} and give the kiosk user write access (or set KIOSK_DATA_DIR)")]
    return [ok("data folder", f"{folder.resolve()} is writable")]


def check_disk(config: Config) -> list[Check]:
    """Free space against the low-disk threshold; films refused by the listener."""
    folder = config.data_dir if config.data_dir.exists() else Path(".")
    free_mb = shutil.disk_usage(folder).free // 2**20
    need = config.min_free_disk_mb
    found = [f"{free_mb} MiB free (captures refused below {need} MiB)"]
    if free_mb < need:
        return [fail("disk space", found[0], "free space now: move old backups off the device, "
                     "or lower KIOSK_MIN_FREE_DISK_MB only if the disk is larger than it seems")]
    checks = [ok("disk space", found[0]) if free_mb >= 2 * need else
              warn("disk space", found[0], "the disk is filling: plan a clean-up before captures stop")]
    refused = list((config.data_dir / "spool" / "refused").glob("*.dcm"))
    if refused:
        checks.append(warn("pushed films", f"{len(refused)} film(s) refused, see "
                           f"{refused[0].parent}/*.json for why", "read the reasons; delete or resend"))
    held = sorted((config.data_dir / "spool" / "held").glob("*.json"))
    if held:  # acknowledged to the X-ray unit, failing by the kiosk's own fault: an alarm
        first = json.loads(held[0].read_text())
        checks.append(fail("pushed films", f"{len(held)} acknowledged film(s) kept for retry since "
                           f"{first.get('since', '?')}: {first.get('message')} [{first.get('code')}]",
                           "the kiosk retries them; fix the cause (the log's ALARM lines, the "
                           "back-end checks below), nothing needs resending"))
    return checks


def check_store(config: Config) -> list[Check]:
    """The SQLite store opens in WAL mode with synchronous=FULL and its audit chain holds."""
    from kiosk.store import Store

    try:
        store = Store.open(config)
    except KioskError as exc:
        return [fail("store", exc.message, "see the message; restore the last backup if damaged")]
    except OSError as exc:
        return [fail("store", f"{config.db_path}: {exc.strerror or exc}", "fix the data folder first")]
    except sqlite3.Error as exc:  # Store.open lets a damaged file's error through as is
        return [fail("store", f"{config.db_path}: {exc}", "stop the kiosk and restore the last backup")]
    try:
        conn = store.db.connection()
        journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        synchronous = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        quick = str(conn.execute("PRAGMA quick_check").fetchone()[0])
        intact, first_bad = store.verify_audit()
    finally:
        store.close()
    detail = f"{config.db_path}: journal_mode={journal}, synchronous={synchronous} (2 = FULL)"
    if journal != "wal" or synchronous != 2:
        return [fail("store", detail, "the store must run with WAL and synchronous=FULL: "
                     "use the kiosk's own Store, not an edited copy")]
    checks = [ok("store", detail)]
    checks.append(ok("store integrity", "quick_check ok") if quick == "ok" else
                  fail("store integrity", quick, "stop the kiosk and restore the last backup"))
    checks.append(ok("audit log", "hash chain intact") if intact else
                  fail("audit log", f"hash chain broken at entry {first_bad}",
                       "the audit log was edited: keep the file for investigation, report it"))
    return checks


def check_models(config: Config) -> list[Check]:
    """Every bundle in the models folder is signed by a trusted key and intact."""
    from engines.bundle import find_bundles
    from kiosk.commands.models import verify_entry

    keys = list(config.trusted_keys.glob("*.pub")) if config.trusted_keys.is_dir() else []
    if not keys:
        return [fail("trusted keys", f"no *.pub in {config.trusted_keys}",
                     "install the project's public keys (models/trusted_keys) or set KIOSK_TRUSTED_KEYS")]
    paths = find_bundles(config.models_dir) if config.models_dir.is_dir() else []
    if not paths:
        return [fail("models", f"no model bundle in {config.models_dir}",
                     "copy the signed bundles into it or set KIOSK_MODELS_DIR")]
    checks = []
    for path in paths:
        entry = verify_entry(path, config.trusted_keys)
        if entry["signature"] == "verified":
            checks.append(ok("models", f"{entry['id']} {entry['version']} verified (key {entry['key_id']})"))
        else:
            checks.append(fail("models", f"{path.name} refused: {entry['error']['message']}",
                               "replace the bundle with a signed copy from the release"))
    return checks


def check_lineup(config: Config) -> list[Check]:
    """Per task: the active bundle runs as recorded, and which candidate reads in shadow
    (docs/change-control.md); a task that falls back or is not screened says why."""
    from kiosk.lifecycle.models import survey
    from kiosk.store import Store

    if not config.db_path.is_file():
        return []  # a fresh kiosk: the first start records the newest bundle of each task
    store = Store.open(config)
    try:
        lineup = survey(config, store)
    finally:
        store.close()
    fix = "install the bundle again, or promote another version (kiosk models promote TASK VERSION)"
    checks = [fail("model lineup", note, fix) if task not in lineup.active else
              warn("model lineup", note, fix) for task, note in sorted(lineup.notes.items())]
    for task, bundle in sorted(lineup.active.items()):
        if task not in lineup.notes:
            shadow = lineup.candidates.get(task)
            checks.append(ok("model lineup", f"{task}: active {bundle.version}" + (
                f", {shadow.version} in shadow" if shadow else "")))
    return checks


def check_backend(config: Config) -> list[Check]:
    """Load every model on its back-end: what really runs, and how fast it warmed up."""
    from kiosk.pipeline import Pipeline

    first = config.backends.split(",")[0].strip()
    try:
        pipeline = Pipeline.from_config(config)
    except KioskError as exc:
        return [fail("back-end", exc.message, f"check KIOSK_BACKENDS ({config.backends}) and "
                     "that the runtime it names is installed (docs/jetson.md on a Jetson)")]
    try:
        described = pipeline.describe()
    finally:
        pipeline.close()
    checks = []
    for model in described:
        if model.get("backend") is None:  # a refused bundle: the models check says why
            continue
        warmup = model.get("warmup_ms")
        took = f"{warmup:.0f} ms" if isinstance(warmup, (int, float)) else "not measured"
        detail = f"{model['id']} runs on {model['backend']} (warm-up {took})"
        if model["backend"] != first:
            skipped = "; ".join(model.get("skipped", []))
            checks.append(warn("back-end", f"{detail}, not {first}: {skipped}",
                               f"install what {first} needs, or put {model['backend']} first "
                               "in KIOSK_BACKENDS"))
        else:
            checks.append(ok("back-end", detail))
    return checks


def check_runtimes(config: Config) -> list[Check]:
    """Which back-ends could run here and why not (without loading a model)."""
    from engines.available import availability

    found = availability(config)
    wanted = [name.strip() for name in config.backends.split(",") if name.strip()]
    runnable = [a.backend for a in found if a.can_run]
    checks = [ok("back-ends", f"{a.backend} could run here: {a.reason}") for a in found if a.can_run]
    checks += [warn("back-ends", f"{a.backend} cannot run here: {a.reason}", "it is in KIOSK_BACKENDS: "
                    "the next one is used; install what it lacks or take it out") if a.backend in wanted
               else Check("back-ends", "INFO", f"{a.backend} cannot run here: {a.reason}")
               for a in found if not a.can_run]
    if not set(wanted) & set(runnable):
        checks.append(fail("back-ends", f"none of KIOSK_BACKENDS ({config.backends}) can run here",
                           f"put one of {', '.join(runnable) or 'the runnable back-ends'} in KIOSK_BACKENDS"))
    return checks


def _http_peer(name: str, url: str) -> Check:
    """Any HTTP answer means the peer is reachable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return fail(name, f"{url} is not an http(s) URL", f"fix the {name} URL setting")
    try:
        # The scheme is checked to be http(s) just above, so no file:// or custom scheme.
        with urllib.request.urlopen(url.rstrip("/") + "/metadata" if name == "FHIR" else url,  # noqa: S310 # nosec B310
                                    timeout=PEER_TIMEOUT_S) as response:
            return ok(name, f"{url} answers (HTTP {response.status})")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return warn(name, f"{url} refuses our credentials (HTTP {exc.code})",
                        "check the user name, password or token settings for this peer")
        return ok(name, f"{url} answers (HTTP {exc.code})")
    except (OSError, ValueError) as exc:
        return warn(name, f"{url} unreachable: {getattr(exc, 'reason', exc)}",
                    "results wait in the outbox; check the network link and the address")


def _tcp_peer(name: str, address: str) -> Check:
    """A TCP connection to host:port opens."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=PEER_TIMEOUT_S):
            return ok(name, f"{address} accepts connections")
    except ValueError:
        return fail(name, f"{address!r} is not host:port", "fix KIOSK_HL7_ADDRESS")
    except OSError as exc:
        return warn(name, f"{address} unreachable: {exc}",
                    "results wait in the outbox; check the network link and the address")


def _dicom_peer(name: str, address: str, calling_ae: str) -> Check:
    """A C-ECHO to AET@host:port succeeds."""
    from pynetdicom import AE

    aet, _, hostport = address.rpartition("@")
    host, _, port = hostport.rpartition(":")
    if not (aet and host and port.isdigit()):
        return fail(name, f"{address!r} is not AET@host:port", "fix the address setting")
    reachable = _tcp_peer(name, f"{host}:{port}")
    if reachable.status != "OK":  # pynetdicom leaks its socket on a refused connection
        return reachable
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = PEER_TIMEOUT_S
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(host, int(port), ae_title=aet)
    if not assoc.is_established:
        why = "rejected us" if assoc.is_rejected else "unreachable"
        return warn(name, f"{address} {why}", f"check the address, and that {aet} knows "
                    f"our AE title {calling_ae}" if assoc.is_rejected else
                    "results wait in the outbox; check the network link and the address")
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if status and int(status.Status) == 0:
        return ok(name, f"{address} answers C-ECHO")
    return warn(name, f"{address} C-ECHO failed", "check the PACS configuration")


def check_peers(config: Config) -> list[Check]:
    """Every configured destination answers (EHR over FHIR or HL7, PACS over DICOM)."""
    checks = []
    if config.fhir_url:
        checks.append(_http_peer("FHIR", config.fhir_url))
    if config.dicomweb_url:
        checks.append(_http_peer("DICOMweb", config.dicomweb_url))
    if config.hl7_address:
        checks.append(_tcp_peer("HL7", config.hl7_address))
    if config.pacs_address:
        checks.append(_dicom_peer("PACS", config.pacs_address, config.dicom_ae_title))
    if not checks:
        checks.append(warn("peers", "no destination configured: results stay on this kiosk",
                           "set KIOSK_FHIR_URL, KIOSK_HL7_ADDRESS or KIOSK_PACS_ADDRESS"))
    if config.dicom_port:
        own = f"{config.dicom_ae_title}@{config.dicom_host}:{config.dicom_port}"
        echo = _dicom_peer("DICOM listener", own, config.dicom_ae_title)
        checks.append(echo if echo.status == "OK" else
                      warn("DICOM listener", f"{own} not answering", "start the service "
                           "(systemctl start kiosk) or check KIOSK_DICOM_HOST/KIOSK_DICOM_PORT"))
    return checks


def _ntp_synchronised() -> bool | None:
    """Whether systemd-timesyncd/chrony says the clock is synchronised (None: cannot tell)."""
    if shutil.which("timedatectl") is None:
        return None
    try:
        done = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip().lower()
    return {"yes": True, "no": False}.get(value) if done.returncode == 0 else None


def check_clock(config: Config, now: datetime | None = None) -> list[Check]:
    """The clock is not before this release, not behind the store's last write, and synced."""
    now = now or datetime.now(UTC)
    set_it = "set the date (timedatectl set-time 'YYYY-MM-DD HH:MM') and enable NTP when online"
    if now < CLOCK_FLOOR:
        return [fail("clock", f"the clock says {now:%Y-%m-%d %H:%M} UTC, before this release", set_it)]
    written = [p.stat().st_mtime for p in config.data_dir.glob("kiosk.db*") if p.exists()]
    if written and max(written) > now.timestamp() + 300:
        last = datetime.fromtimestamp(max(written), UTC)
        return [fail("clock", f"the store was written at {last:%Y-%m-%d %H:%M} UTC, after 'now' "
                     f"({now:%Y-%m-%d %H:%M}): the clock went backwards", set_it)]
    synced = _ntp_synchronised()
    detail = f"{now:%Y-%m-%d %H:%M:%S} UTC"
    if synced is False:
        return [warn("clock", f"{detail}, not synchronised by NTP",
                     "fine offline; check the time against a phone and enable NTP when a link exists")]
    return [ok("clock", detail + (", NTP synchronised" if synced else ""))]


def check_camera(config: Config) -> list[Check]:
    """The configured camera gives a frame."""
    if not config.camera_uri:
        return [ok("camera", "none configured (uploads only)")]
    from hardware.camera import open_camera

    try:
        camera = open_camera(config.camera_uri)
        try:
            frame = camera.read()
        finally:
            camera.close()
    except KioskError as exc:
        return [fail("camera", exc.message, "check the cable and KIOSK_CAMERA_URI")]
    return [ok("camera", f"{config.camera_uri}: {frame.shape[1]}x{frame.shape[0]} frame")]


def check_hardware(config: Config) -> list[Check]:
    """Temperatures and memory from the hardware status."""
    from hardware.status import read_status

    status = read_status(config)
    temps = status["temperatures_c"]
    detail = (f"{status['platform']['kind']}, CPU {temps['cpu'] or '?'} °C, GPU {temps['gpu'] or '?'} °C, "
              f"power mode {status['power_mode'] or '?'}, {status['memory']['available_mb']} MiB free")
    problems = [w for w in status["warnings"] if "disk" not in w.lower()]
    if problems:
        return [warn("hardware", "; ".join(problems), "see the admin page's hardware panel")]
    return [ok("hardware", detail)]


def run_checks(config: Config, *, quick: bool = False) -> list[Check]:
    """Every check, in the order a person would fix them."""
    steps: list[Callable[[Config], list[Check]]] = [check_data_folder, check_disk, check_store,
                                                    check_clock, check_models, check_lineup,
                                                    check_hardware, check_runtimes]
    if not quick:
        steps += [check_backend, check_peers, check_camera]
    checks: list[Check] = []
    for step in steps:
        try:
            checks += step(config)
        except KioskError as exc:
            checks.append(fail(step.__name__.removeprefix("check_"), exc.message, "see the message"))
        except OSError as exc:
            checks.append(fail(step.__name__.removeprefix("check_"), str(exc), "see the message"))
    return checks


def run(args: argparse.Namespace, config: Config) -> int:
    """Print every check; 1 when any failed."""
    started = time.monotonic()
    checks = run_checks(config, quick=args.quick)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            print(f"[{check.status:^4}] {check.name:<15} {check.detail}")
            if check.fix:
                print(f"{'':<22} fix: {check.fix}")
        failed = sum(c.status == "FAIL" for c in checks)
        warned = sum(c.status == "WARN" for c in checks)
        print(f"{len(checks)} checks, {failed} failed, {warned} warnings "
              f"({time.monotonic() - started:.1f} s)")
    return 1 if any(c.status == "FAIL" for c in checks) else 0
