"""The kiosk's one configuration table: ``KIOSK_*`` environment variables over defaults.

Each setting is a field of :class:`Config` with a default and a help line; ``kiosk config``
prints the table and a test checks that every setting is documented. Add a setting here and
nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.errors import ConfigError

PREFIX = "KIOSK_"
ROOT = Path(__file__).resolve().parent.parent


def setting(default: Any, help: str) -> Any:
    """A configuration field with its default and help line."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    """Every setting of the kiosk, with defaults that run offline on a CPU."""

    # storage
    data_dir: Path = setting(Path("data"), "Folder for the SQLite store, images, spool and keys.")
    min_free_disk_mb: int = setting(500, "Refuse new captures when free disk space drops below this.")
    # models and inference
    models_dir: Path = setting(ROOT / "models", "Folder of signed model bundles to load.")
    trusted_keys: Path = setting(
        ROOT / "models" / "trusted_keys", "Folder of trusted Ed25519 public keys (*.pub) for bundles."
    )
    backends: str = setting(
        "onnxruntime-cpu",
        "Inference back-ends in order of preference, comma-separated "
        "(tensorrt, onnxruntime-trt, onnxruntime-cuda, onnxruntime-cpu, triton).",
    )
    threads: int = setting(0, "Intra-op threads for CPU inference; 0 means one per physical core.")
    triton_url: str = setting("", "Triton inference server URL (http://host:8000) for the triton back-end.")
    engine_cache_dir: Path = setting(Path("data/engines"), "Cache of TensorRT engines built on this device.")
    batch_size: int = setting(8, "Images per inference batch when screening many; also the TensorRT max.")
    # intake limits
    max_upload_mb: int = setting(64, "Largest file accepted for screening, in MiB.")
    max_pixels: int = setting(60_000_000, "Largest image accepted (rows x columns); larger is refused.")
    sandbox_workers: int = setting(2, "Decode worker processes for untrusted files; 0 decodes in-process.")
    sandbox_memory_mb: int = setting(1024, "Memory a decode worker may allocate beyond its libraries, MiB.")
    sandbox_timeout_s: float = setting(10.0, "Seconds a decode may take before its worker is killed.")
    # clinic
    clinic_name: str = setting("Rural Health Clinic", "Name printed on referral slips.")
    kiosk_id: str = setting(
        "", "This kiosk's name in fleet reports (never a patient's); empty: a random one, made "
        "once and kept in the data folder (kiosk-id)."
    )
    fleet_min_cell: int = setting(
        5, "Fleet reports leave out every count from 1 to this minus 1 (small cells), and any "
        "figure made from one, so that no small group of patients can be singled out."
    )
    fleet_measure_url: str = setting(
        "https://screening-kiosk.example/fhir/Measure/fleet-screening",
        "Canonical URL of the Measure that fleet MeasureReports answer (the central query's key)."
    )
    fleet_daily: bool = setting(
        False, "The sync loop queues yesterday's fleet report once a day (kiosk fleet report "
        "does it by hand)."
    )
    prevalence: str = setting(
        "", "Expected share of positives per task, for PPV/NPV, e.g. 'fundus-dr=0.10,cxr-adult=0.08'; "
        "a task not listed uses its bundle's own figure (the admin page can change both)."
    )
    # web
    host: str = setting("127.0.0.1", "Address the web app listens on.")
    port: int = setting(8080, "Port the web app listens on.")
    secret_key: str = setting("", "Session signing key; generated into the data folder when empty.")
    session_timeout_min: int = setting(15, "Log users off after this many minutes without activity.")
    secure_cookies: bool = setting(True, "Send session cookies with the Secure flag (HTTPS).")
    # hardware
    camera_uri: str = setting(
        "", "Camera to capture from: v4l2:///dev/video0, csi://0 (Jetson), file:///..., http://... (MJPEG)."
    )
    dicom_ae_title: str = setting("KIOSK", "AE title of the kiosk's DICOM listener.")
    dicom_port: int = setting(11112, "Port of the DICOM listener (C-STORE/C-ECHO); 0 disables it.")
    dicom_host: str = setting(
        "127.0.0.1", "Address the DICOM listener binds; the kiosk's LAN address so the X-ray unit can push."
    )
    dicom_allowed_aes: str = setting(
        "", "Calling AE titles allowed to send (comma-separated); empty allows any."
    )
    # sync destinations (empty disables)
    fhir_url: str = setting("", "FHIR R4 base URL of the EHR.")
    hl7_address: str = setting("", "HL7 v2 MLLP peer as host:port.")
    pacs_address: str = setting("", "PACS for C-STORE as AET@host:port.")
    dicomweb_url: str = setting("", "DICOMweb base URL for STOW-RS.")
    send_originals: bool = setting(False, "Also send the original images to the PACS.")
    sr_in_film_study: bool = setting(
        False, "Put the SR and heat-map captures in the screened film's own study (UID, accession)."
    )
    sync_interval_s: int = setting(30, "Seconds between sync passes in watch mode.")
    fhir_auth: str = setting("", "FHIR credentials: bearer:<token> or basic:<user>:<password>.")
    dicomweb_auth: str = setting("", "DICOMweb credentials: bearer:<token> or basic:<user>:<password>.")
    tls_ca_file: str = setting("", "CA bundle (PEM) verifying TLS destinations; empty: the system's.")
    hl7_tls: bool = setting(False, "Wrap the MLLP connection in TLS (verified with KIOSK_TLS_CA_FILE).")
    hl7_in_doubt: str = setting(
        "resend", "An HL7 message that went out before a crash (or got no answer) with no ACK "
        "noted: resend (the receiver de-duplicates by MSH-10) or park (it does not: a person checks)."
    )
    pacs_tls: bool = setting(False, "Use DICOM TLS for C-STORE (verified with KIOSK_TLS_CA_FILE).")
    pacs_ae_title: str = setting("", "Calling AE title towards the PACS; empty: KIOSK_DICOM_AE_TITLE.")
    patient_id_system: str = setting("urn:kiosk:patient-id", "Identifier system of patient identifiers.")
    sync_timeout_s: float = setting(15.0, "Seconds to wait for a destination to connect or answer.")
    sync_backoff_s: float = setting(5.0, "First retry delay, doubling each attempt (with jitter).")
    sync_backoff_max_s: float = setting(3600.0, "Longest delay between retries of one item.")

    @property
    def db_path(self) -> Path:
        """The SQLite store inside the data folder."""
        return self.data_dir / "kiosk.db"

    def prevalence_for(self, task: str) -> float | None:
        """The clinic's expected prevalence for a task from KIOSK_PREVALENCE (None: not set)."""
        return parse_prevalence(self.prevalence).get(task)


def parse_prevalence(text: str) -> dict[str, float]:
    """'fundus-dr=0.10, cxr-adult=0.08' -> {task: share}; ConfigError for anything else."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        task, _, raw = part.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not task.strip() or not 0.0 < value < 1.0:
            raise ConfigError(f"{PREFIX}PREVALENCE: {part!r} is not TASK=share with a share "
                              "between 0 and 1", code="bad_setting")
        shares[task.strip()] = value
    return shares


def settings() -> list[tuple[str, str, Any, str]]:
    """The table: (field name, environment variable, default, help)."""
    return [
        (f.name, PREFIX + f.name.upper(), f.default, f.metadata["help"])
        for f in dataclasses.fields(Config)
    ]


def _parse(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind in (bool, "bool"):
            value = raw.strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a boolean")
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name.upper()}: {exc}", code="bad_setting") from exc


def load_config(env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Build the configuration from ``KIOSK_*`` variables, then keyword overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        key = PREFIX + f.name.upper()
        if key in env:
            values[f.name] = _parse(f.name, env[key], f.type)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}", code="bad_setting")
    values.update(overrides)
    config = Config(**values)
    _check(config)
    return config


def _check(config: Config) -> None:
    parse_prevalence(config.prevalence)
    if config.max_upload_mb <= 0 or config.max_pixels <= 0:
        raise ConfigError("size limits must be positive")
