"""The benchmark's end of the side channel (drivers/peers_common.py sends): Unix
datagram sockets read by a thread, every event kept in arrival order.

Completions and latencies come from here, never from polling a system's store. A Unix
datagram socket does not drop: when its queue is full, a sender waits.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import Iterator

import attrs

RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
READ_BATCH_MAX = 1024
LANES = 16
POLL_MS = 200


@attrs.frozen(kw_only=True)
class Start:
    """A handler started: which job (`index`), when it was enqueued (0: before the workers
    started), when the handler began, in which process."""

    index: int
    enqueued_at: float
    at: float
    pid: int


@attrs.frozen(kw_only=True)
class Done:
    """A long handler ran to its end."""

    index: int
    at: float
    pid: int


def parse(data: bytes) -> Start | Done | None:
    """One datagram; None for anything that is not one of ours.

    >>> parse(b"S 7 12.5 13.0 42")
    Start(index=7, enqueued_at=12.5, at=13.0, pid=42)
    >>> parse(b"D 7 23.0 42")
    Done(index=7, at=23.0, pid=42)
    >>> parse(b"S 7 nan") is None
    True
    """
    try:
        fields = data.decode("ascii").split()
        if fields[0] == "S" and len(fields) == 5:
            return Start(
                index=int(fields[1]),
                enqueued_at=float(fields[2]),
                at=float(fields[3]),
                pid=int(fields[4]),
            )
        if fields[0] == "D" and len(fields) == 4:
            return Done(index=int(fields[1]), at=float(fields[2]), pid=int(fields[3]))
    except (UnicodeDecodeError, ValueError, IndexError):
        return None
    return None


class Receiver:
    """Binds `lanes` sockets, `<path>.0` to `<path>.<lanes - 1>`, and records every event
    until `close()`. Each sending thread keeps to one lane: a lane's queue holds only
    `net.unix.max_dgram_qlen` datagrams (10 on most systems) and a sender waits while its
    lane is full, so more lanes make more room without changing a system setting."""

    def __init__(self, path: str, lanes: int = LANES) -> None:
        assert 1 <= lanes <= 256
        self.path = path
        self.lanes = lanes
        self.paths = [f"{path}.{lane}" for lane in range(lanes)]
        self.starts: list[Start] = []
        self.dones: list[Done] = []
        self.rejected = 0
        self._changed = threading.Condition()
        self._socks = []
        for lane_path in self.paths:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.bind(lane_path)
            sock.setblocking(False)
            self._socks.append(sock)
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="sidechannel", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        """Wait until a lane has datagrams, then take every one already queued on every
        ready lane without blocking, and record them together: the reader keeps its work
        per datagram small, so that senders seldom wait for it."""
        poller = select.poll()
        by_fd = {sock.fileno(): sock for sock in self._socks}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while not self._closed:
            ready = poller.poll(POLL_MS)
            batch: list[bytes] = []
            for fd, _ in ready:
                sock = by_fd.get(fd)
                if sock is None:
                    continue
                try:
                    while len(batch) < READ_BATCH_MAX:
                        batch.append(sock.recv(512))
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    return  # closed
            if not batch:
                continue
            events = [parse(data) for data in batch]
            with self._changed:
                for event in events:
                    if isinstance(event, Start):
                        self.starts.append(event)
                    elif isinstance(event, Done):
                        self.dones.append(event)
                    else:
                        self.rejected += 1
                self._changed.notify_all()

    def mark(self) -> int:
        """How many starts arrived so far: pass it to `wait_starts` to wait for later ones."""
        with self._changed:
            return len(self.starts)

    def wait_starts(self, count: int, *, since: int = 0, timeout_s: float) -> list[Start]:
        """The starts after the first `since`, once there are `count` of them or the bound
        passed (then fewer)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self.starts) - since < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
            return self.starts[since : since + count]

    def wait_for(self, index: int, *, nth: int, timeout_s: float) -> Start | None:
        """The `nth` (1-based) start of job `index`, or None if it did not come in time."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [s for s in self.starts if s.index == index]
                if len(found) >= nth:
                    return found[nth - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.5))

    def wait_done(self, index: int, *, timeout_s: float) -> Done | None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [d for d in self.dones if d.index == index]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.5))

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=5)
        for sock, lane_path in zip(self._socks, self.paths, strict=True):
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lane_path)


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    """A receiver on a fresh socket path in a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="peers-") as folder:
        recv = Receiver(os.path.join(folder, "events.sock"))
        try:
            yield recv
        finally:
            recv.close()
