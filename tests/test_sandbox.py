"""The decode sandbox: a hostile file is killed and refused, and the next file still decodes.

Most tests drive the real ``kiosk.intake.read_image`` in the workers. A real decoder that loops
forever or segfaults on demand does not exist, so three tests use the stand-in decoder
``fake_decoder`` below (a deliberate mock of a decoder bug, run in the real worker processes).
"""

from __future__ import annotations

import ctypes
import io
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from kiosk.config import load_config
from kiosk.domain import Image
from kiosk.errors import IntakeError
from kiosk.intake import IntakeLimits
from kiosk.sandbox import SandboxedIntake

FAKE = "test_sandbox:fake_decoder"


def fake_decoder(data: bytes, **kwargs: object) -> Image:
    """Stand-in decoder: its input says which failure to act out."""
    if data == b"loop":
        while True:
            time.sleep(0.01)
    if data == b"allocate":
        hog = [bytearray(64 * 2**20) for _ in range(64)]  # 4 GiB, far over the cap
        return Image(np.zeros((len(hog), 1), np.uint8))
    if data == b"segfault":
        ctypes.string_at(0)  # dereference NULL: the worker dies of SIGSEGV
    if data == b"bug":
        raise ZeroDivisionError("a decoder bug")
    if data == b"refuse":
        raise IntakeError("not an image", code="not_an_image")
    return Image(np.frombuffer(data, np.uint8).reshape(1, -1).copy(), source=str(kwargs.get("source")))


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    PILImage.new(mode, (width, height), 0).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fake_pool() -> object:
    with SandboxedIntake(memory_mb=256, timeout_s=2.0, workers=2, decoder=FAKE) as pool:
        yield pool


def test_a_file_decodes_in_a_worker_process(fake_pool: SandboxedIntake) -> None:
    image = fake_pool.read_image(b"\x01\x02\x03", source="upload.png")
    assert image.pixels.tolist() == [[1, 2, 3]]
    assert image.source == "upload.png"
    assert len(fake_pool.pids()) == 2 and os.getpid() not in fake_pool.pids()


def test_a_refusal_keeps_its_code_and_the_worker(fake_pool: SandboxedIntake) -> None:
    before = fake_pool.pids()
    with pytest.raises(IntakeError) as refused:
        fake_pool.read_image(b"refuse")
    assert refused.value.code == "not_an_image"
    assert fake_pool.pids() == before


def test_a_looping_decode_is_killed_and_the_next_file_decodes(fake_pool: SandboxedIntake) -> None:
    before = set(fake_pool.pids())
    with pytest.raises(IntakeError) as refused:
        fake_pool.read_image(b"loop")
    assert refused.value.code == "decode_timeout"
    after = set(fake_pool.pids())
    assert len(after) == 2 and len(before - after) == 1, "the hung worker was not replaced"
    for _ in range(4):  # every worker, the replacement included, still decodes
        assert fake_pool.read_image(b"\x07").pixels.tolist() == [[7]]


def test_an_allocation_over_the_cap_is_refused_and_the_next_file_decodes(
    fake_pool: SandboxedIntake,
) -> None:
    with pytest.raises(IntakeError) as refused:
        fake_pool.read_image(b"allocate")
    assert refused.value.code == "decode_failed"
    assert fake_pool.read_image(b"\x09").pixels.tolist() == [[9]]


def test_a_crashing_decoder_is_replaced_and_the_next_file_decodes(fake_pool: SandboxedIntake) -> None:
    before = set(fake_pool.pids())
    with pytest.raises(IntakeError) as refused:
        fake_pool.read_image(b"segfault")
    assert refused.value.code == "decode_failed"
    assert len(before - set(fake_pool.pids())) == 1
    assert fake_pool.read_image(b"\x05").pixels.tolist() == [[5]]


def test_a_worker_killed_while_idle_is_replaced_before_the_next_file(fake_pool: SandboxedIntake) -> None:
    for pid in fake_pool.pids():
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    for _ in range(3):  # no innocent file is refused for a worker that died in between
        assert fake_pool.read_image(b"\x03").pixels.tolist() == [[3]]
    assert len(fake_pool.pids()) == 2


def test_a_decoder_bug_is_refused_not_raised(fake_pool: SandboxedIntake) -> None:
    with pytest.raises(IntakeError) as refused:
        fake_pool.read_image(b"bug")
    assert refused.value.code == "decode_failed"
    assert fake_pool.read_image(b"\x04").pixels.tolist() == [[4]]


def test_zero_workers_decodes_in_process() -> None:
    with SandboxedIntake(workers=0, decoder=FAKE) as inline:
        assert inline.pids() == []
        assert inline.read_image(b"\x02").pixels.tolist() == [[2]]
        with pytest.raises(ZeroDivisionError):
            inline.read_image(b"bug")


def test_settings_size_the_sandbox() -> None:
    config = load_config(env={"KIOSK_SANDBOX_WORKERS": "0", "KIOSK_SANDBOX_MEMORY_MB": "300",
                              "KIOSK_SANDBOX_TIMEOUT_S": "2.5"})
    with SandboxedIntake.from_config(config) as sandbox:
        assert (sandbox.workers, sandbox.memory_mb, sandbox.timeout_s) == (0, 300, 2.5)
        assert sandbox.limits is not None and sandbox.limits.max_pixels == config.max_pixels


# -- the real intake in the workers -------------------------------------------------------------


@pytest.fixture(scope="module")
def intake_pool() -> object:

    with SandboxedIntake(IntakeLimits(), memory_mb=96, timeout_s=20.0, workers=1) as pool:
        yield pool


def test_a_real_decompression_bomb_under_the_pixel_limit_is_refused(intake_pool: SandboxedIntake) -> None:
    # 7000 x 7000 RGB: 49 Mpx passes the 60 Mpx pixel limit, but needs ~147 MB to decode; the
    # file itself is ~140 kB. The worker's 96 MiB cap stops it, whatever intake does about it.
    bomb = _png(7000, 7000)
    assert len(bomb) < 1_000_000
    with pytest.raises(IntakeError) as refused:
        intake_pool.read_image(bomb, source="bomb.png")
    assert refused.value.code in {"decode_failed", "decompression_bomb", "too_large"}
    image = intake_pool.read_image(_png(64, 48), source="small.png")
    assert image.size == (48, 64)


def test_a_slow_real_decode_is_stopped_by_the_time_limit() -> None:

    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(noise).save(buffer, format="PNG")  # incompressible: no bomb, a long decode
    with SandboxedIntake(IntakeLimits(), memory_mb=1024, timeout_s=0.001, workers=1) as pool:
        with pytest.raises(IntakeError) as refused:
            pool.read_image(buffer.getvalue(), source="big.png")
        assert refused.value.code == "decode_timeout"


def test_a_large_file_reaches_the_worker_through_its_read_only_inbox() -> None:
    from builders import film_dicom
    from conftest import shared

    from kiosk.intake import read_image
    from kiosk.mailbox import INBOX_KEEP_BYTES

    film = shared("dicom", "SIIM-CXR-no-pneumothorax.dcm").read_bytes()
    with SandboxedIntake(workers=1) as sandbox:
        image = sandbox.read_image(film, target_size=256)
        (worker,) = list(sandbox._all)
        if not hasattr(os, "memfd_create"):
            pytest.skip("no memfd on this platform: files go through the pipe")
        inbox = worker.mailbox.inbox
        assert inbox is not None and os.fstat(inbox).st_size == len(film)
        fds = os.listdir(f"/proc/{worker.process.pid}/fd")
        modes = {os.readlink(f"/proc/{worker.process.pid}/fd/{fd}"): fd for fd in fds}
        (inbox_fd,) = [fd for link, fd in modes.items() if "kiosk-decode-inbox" in link]
        flags = Path(f"/proc/{worker.process.pid}/fdinfo/{inbox_fd}").read_text()
        assert int(flags.split("flags:")[1].split()[0], 8) & os.O_ACCMODE == os.O_RDONLY
        big = film_dicom(np.zeros((3000, 3000), np.uint16))  # 18 MB
        assert len(big) > INBOX_KEEP_BYTES
        assert sandbox.read_image(big, target_size=256).pixels.shape == (375, 375)
        assert os.fstat(inbox).st_size == 0  # a large file's memory went back
    assert np.array_equal(image.pixels, read_image(film, target_size=256).pixels)


def test_pixels_come_back_through_a_sealed_outbox_that_takes_only_what_was_announced() -> None:
    import fcntl

    from kiosk import mailbox as mail

    if not hasattr(os, "memfd_create"):
        pytest.skip("no memfd on this platform: pixels come back through the pipe")
    box = mail.Mailbox(outbox=mail._sealed_outbox())
    try:
        assert box.outbox is not None
        seals = fcntl.fcntl(box.outbox, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_GROW and seals & fcntl.F_SEAL_SEAL
        with pytest.raises(PermissionError):  # a worker cannot take memory through it
            os.ftruncate(box.outbox, mail.OUTBOX_BYTES * 4)
        pixels = np.random.default_rng(0).integers(0, 256, (324, 486, 3), dtype=np.uint8)
        sent = mail.answer(box, ("image", Image(pixels, source="eye.jpg", kind="fundus")))
        assert sent[0] == "image_outbox" and sent[1].pixels.size == 0  # not pickled
        status, image = mail.open_reply(box, sent)
        assert status == "image" and image.source == "eye.jpg" and np.array_equal(image.pixels, pixels)
        image.pixels[0, 0, 0] ^= 1  # a fresh, writable array
        with pytest.raises(ValueError):  # more than the outbox holds: refused, never read
            mail.open_reply(box, ("image_outbox", sent[1], (4096, 4096, 3)))
        small = np.zeros((8, 8), np.uint8)  # tiny or not uint8: through the pipe as before
        assert mail.answer(box, ("image", Image(small)))[0] == "image"
        assert mail.answer(box, ("image", Image(pixels.astype(np.uint16))))[0] == "image"
    finally:
        box.close()
