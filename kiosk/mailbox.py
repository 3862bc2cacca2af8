"""Shared memory between the kiosk and one decode worker: an inbox for the file, an outbox for
the pixels (Linux memfds passed over the worker's socket; elsewhere everything uses the pipe).

Through the pipe, a file crosses in pieces of the socket's buffer, with a wake-up of both
processes per piece, which costs most on a loaded machine; through a mailbox it is one write and
one read. Neither weakens the sandbox:
- the worker holds its **inbox** read-only: it cannot write into the kiosk's copy of a file;
- the **outbox** has a fixed size, sealed against growing (``F_SEAL_GROW``), so a worker cannot
  use it to take memory past its own cap; the kiosk reads from it only as many bytes as the
  announced shape and dtype need, and only uint8 pixels (what intake returns), into a fresh
  array; whatever the worker wrote, it is pixels of the worker's own answer, as through the pipe.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, replace
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from kiosk.domain import Image

#: Files at least this large go through the inbox.
INBOX_MIN_BYTES = 64 * 1024
#: An inbox that held a larger file is emptied after it, so that the memory goes back.
INBOX_KEEP_BYTES = 16 * 2**20
#: The outbox holds up to this many bytes of pixels (a 1024x1024 colour image); larger ones and
#: everything under OUTBOX_MIN_BYTES go through the pipe.
OUTBOX_BYTES = 3 * 2**20
OUTBOX_MIN_BYTES = 16 * 1024


@dataclass
class Mailbox:
    """The file descriptors one side holds (None: that direction uses the pipe)."""

    inbox: int | None = None
    outbox: int | None = None

    def close(self) -> None:
        """Close both descriptors (idempotent)."""
        for fd in (self.inbox, self.outbox):
            if fd is not None:
                os.close(fd)
        self.inbox = self.outbox = None


def _memfd(name: str) -> int | None:
    """A new memfd that can be sealed, or None where there is none."""
    if not hasattr(os, "memfd_create"):
        return None
    try:
        return os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError:
        return None


def _sealed_outbox() -> int | None:
    """A memfd of OUTBOX_BYTES that nobody can grow or shrink."""
    fd = _memfd("kiosk-decode-outbox")
    if fd is None:
        return None
    try:
        os.ftruncate(fd, OUTBOX_BYTES)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    except (OSError, AttributeError):
        os.close(fd)
        return None
    return fd


def open_for_worker(conn: Connection, pid: int | None) -> Mailbox:
    """The kiosk's side: make a worker's mailbox and pass it over the worker's socket."""
    mailbox = Mailbox(_memfd("kiosk-decode-inbox"), _sealed_outbox()) if pid else Mailbox()
    conn.send(("mailbox", mailbox.inbox is not None, mailbox.outbox is not None))
    for fd in (mailbox.inbox, mailbox.outbox):
        if fd is not None:
            reduction.send_handle(conn, fd, pid)
    return mailbox


def receive(conn: Connection) -> Mailbox:
    """The worker's side: its mailbox, the inbox reopened read-only."""
    _, has_inbox, has_outbox = conn.recv()
    inbox = _read_only(reduction.recv_handle(conn)) if has_inbox else None
    outbox = reduction.recv_handle(conn) if has_outbox else None
    return Mailbox(inbox, outbox)


def _read_only(fd: int) -> int:
    """The same memfd opened read-only."""
    try:
        again = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no /proc here: keep the descriptor as it came
        return fd
    os.close(fd)
    return again


def post(mailbox: Mailbox, data: bytes) -> object:
    """The kiosk's side: what to send for ``data`` (a note that it is in the inbox, or the bytes)."""
    if mailbox.inbox is None or len(data) < INBOX_MIN_BYTES:
        return data
    try:
        written = os.pwrite(mailbox.inbox, data, 0)
    except OSError:  # no memory for it now: the pipe still works
        return data
    return ("inbox", written) if written == len(data) else data


def after(mailbox: Mailbox, data: bytes) -> None:
    """The kiosk's side, once the worker answered: give a large file's memory back."""
    if mailbox.inbox is not None and len(data) > INBOX_KEEP_BYTES:
        os.ftruncate(mailbox.inbox, 0)


def collect(mailbox: Mailbox, payload: object) -> bytes:
    """The worker's side: the file the kiosk sent."""
    if isinstance(payload, tuple) and mailbox.inbox is not None:
        data: bytes = os.pread(mailbox.inbox, int(payload[1]), 0)
        return data
    return payload  # type: ignore[return-value]


def answer(mailbox: Mailbox, reply: tuple[Any, ...]) -> tuple[Any, ...]:
    """The worker's side: an image's pixels into the outbox where they fit, else the reply as is."""
    if reply[0] != "image" or mailbox.outbox is None:
        return reply
    pixels = reply[1].pixels
    if (not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or not pixels.flags.c_contiguous
            or not OUTBOX_MIN_BYTES <= pixels.nbytes <= OUTBOX_BYTES):
        return reply
    if os.pwrite(mailbox.outbox, pixels.data.cast("B"), 0) != pixels.nbytes:
        return reply
    return ("image_outbox", replace(reply[1], pixels=np.empty(0, np.uint8)), tuple(pixels.shape))


def open_reply(mailbox: Mailbox, reply: tuple[Any, ...]) -> tuple[Any, ...]:
    """The kiosk's side: an outbox reply as the usual ("image", Image) one."""
    if reply[0] != "image_outbox":
        return reply
    shape = tuple(int(side) for side in reply[2])
    if (mailbox.outbox is None or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3)
            or min(shape) < 1 or int(np.prod(shape)) > OUTBOX_BYTES):
        raise ValueError(f"a decode worker announced pixels of shape {shape}")
    pixels = np.empty(shape, np.uint8)
    if os.preadv(mailbox.outbox, [pixels.data.cast("B")], 0) != pixels.nbytes:
        raise ValueError("a decode worker's outbox held fewer pixels than announced")
    image: Image = reply[1]
    return ("image", replace(image, pixels=pixels))
