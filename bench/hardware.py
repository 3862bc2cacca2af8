"""Hardware benchmark: the kiosk's DICOM listener and MJPEG camera against the usual tools.

    python -m bench.hardware                  # ~1 min on 2 cores; --films N, --out PATH

1. Receiving films: N real chest films (SIIM, 1024x1024 JPEG) pushed by pynetdicom over one
   association on loopback to pynetdicom's ``storescp`` app (the usual receiver; it decodes the
   dataset and writes it without fsync) and
   to the kiosk's listener (spools with write + fsync + rename before it answers). Per film:
   median C-STORE round trip; throughput.
2. A live MJPEG camera: a loopback server sends 640 px fundus frames at 25 fps, each carrying its
   frame number in a 16x16 corner block. The usual way is ``cv2.VideoCapture(url, CAP_FFMPEG)``;
   the kiosk's is ``hardware.camera.open_camera``. Measured: time to the first frame, then how
   many frames behind the newest one a read is after the reader sat idle for 2 s (a nurse
   looking away, then pressing "capture").
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from pynetdicom import AE

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FPS = 25.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _push(port: int, path: Path, count: int) -> list[float]:
    """C-STORE the film ``count`` times over one association; round trips in ms."""
    ds = pydicom.dcmread(path)
    ae = AE(ae_title="XRAY1")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="KIOSK")
    assert assoc.is_established, "association refused"
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            status = assoc.send_c_store(ds)
            times.append((time.perf_counter() - started) * 1000)
            assert int(status.Status) == 0
    finally:
        assoc.release()
    return times


def bench_storescp(path: Path, count: int, folder: Path) -> list[float]:
    """The usual receiver: pynetdicom's storescp app writing each film to a folder (no fsync).

    (dcmtk's storescp cannot be told to listen on loopback only, so it is not used here.)
    """
    port = _free_port()
    out = folder / "storescp"
    out.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "pynetdicom", "storescp", "-aet", "KIOSK",
                               "-ba", "127.0.0.1", "-od", str(out), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        return _push(port, path, count)
    finally:
        server.terminate()
        server.wait()


def bench_kiosk_listener(path: Path, count: int, folder: Path) -> list[float]:
    """The kiosk's listener, spooling each film durably before it answers."""
    from hardware.listener import DicomListener
    from hardware.spool import Spool
    from kiosk.config import load_config

    config = load_config(env={}, data_dir=folder / "kiosk", dicom_port=0, dicom_host="127.0.0.1",
                         min_free_disk_mb=1)
    listener = DicomListener(config, Spool(config.data_dir / "spool", min_free_mb=1))
    port = listener.start()
    try:
        return _push(port, path, count)
    finally:
        listener.stop()


def _frames() -> list[np.ndarray]:
    """Three real fundus photographs at 640 px, BGR."""
    frames = []
    for name in ("10_left.jpeg", "15_right.jpeg", "16_left.jpeg"):
        bgr = cv2.imread(str(SHARED / "fundus" / "eyepacs-fullres" / name))
        height = round(bgr.shape[0] * 640 / bgr.shape[1]) // 2 * 2
        frames.append(cv2.resize(bgr, (640, height), interpolation=cv2.INTER_AREA))
    return frames


def _numbered(frame: np.ndarray, number: int) -> bytes:
    """The frame with its number (mod 256) as the grey level of a 16x16 corner block, JPEG."""
    marked = frame.copy()
    marked[:16, :16] = number % 256
    ok, data = cv2.imencode(".jpg", marked, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def _number_of(rgb_or_bgr: np.ndarray) -> int:
    """The frame number read back from the corner block."""
    return round(float(rgb_or_bgr[4:12, 4:12].mean()))


class _Camera:
    """A loopback MJPEG server sending numbered frames at FPS; ``sent`` is the newest number."""

    def __init__(self) -> None:
        base = _frames()
        self.jpegs = [_numbered(base[n % len(base)], n) for n in range(256)]
        self.sent = -1
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                number, next_at = 0, time.monotonic()
                try:
                    while True:
                        jpeg = camera.jpegs[number % 256]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        camera.sent = number
                        number += 1
                        next_at += 1 / FPS
                        time.sleep(max(0.0, next_at - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _behind(sent: int, shown: int) -> int:
    """How many frames older than the newest sent one the shown frame is (mod 256)."""
    return (sent - shown) % 256


def bench_camera(way: str, idle_s: float = 2.0, trials: int = 3) -> dict[str, Any]:
    """Time to first frame and staleness after an idle pause, for one way of reading."""
    camera = _Camera()
    try:
        started = time.perf_counter()
        if way == "usual":
            capture = cv2.VideoCapture(camera.url, cv2.CAP_FFMPEG)

            def read() -> np.ndarray:
                ok, frame = capture.read()
                assert ok, "OpenCV read failed"
                return frame

            close = capture.release
        else:
            from hardware.camera import open_camera

            kiosk = open_camera(camera.url)
            read, close = kiosk.read, kiosk.close
        read()
        first_ms = (time.perf_counter() - started) * 1000
        behind = []
        for _ in range(trials):
            time.sleep(idle_s)
            frame = read()
            behind.append(_behind(camera.sent, _number_of(frame)))
        close()
    finally:
        camera.close()
    return {"first_frame_ms": round(first_ms, 1), "frames_behind_after_idle": behind,
            "seconds_behind_median": round(statistics.median(behind) / FPS, 2)}


def main() -> None:
    """Run both benchmarks and print a table (JSON to --out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hardware.json")
    args = parser.parse_args()
    film = SHARED / "dicom" / "SIIM-CXR-no-pneumothorax.dcm"
    results: dict[str, Any] = {"machine": platform.processor() or platform.machine(),
                               "film": film.name, "film_bytes": film.stat().st_size}
    with tempfile.TemporaryDirectory() as tmp:
        results["receive_pynetdicom_storescp"] = _summary(bench_storescp(film, args.films, Path(tmp)))
        results["receive_kiosk_listener"] = _summary(bench_kiosk_listener(film, args.films, Path(tmp)))
    results["camera_usual_opencv_ffmpeg"] = bench_camera("usual")
    results["camera_kiosk"] = bench_camera("kiosk")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def _summary(times: list[float]) -> dict[str, float]:
    """Median and spread of round trips, and films per second."""
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1), "films_per_s": round(1000 * len(times) / sum(times), 1)}


if __name__ == "__main__":
    main()
