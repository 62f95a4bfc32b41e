# The target's output (stdout and stderr together): a pipe per start, read as it comes, of
# which only the last OUTPUT_KEPT bytes are kept.
#
# Strategy: a target may print without end (a crash loop, a debug flood); neither pytest's
# memory nor the disk may grow with it. Each start gets a fresh pipe; a reader thread drains
# it into a bounded buffer until every writer has closed it. The pipe's read end is
# non-blocking and every read happens under the lock, so `tail()` first drains what is still
# in the pipe itself: everything the target wrote before the call is in the tail.
#
# Invariants: the buffer never holds more than OUTPUT_KEPT bytes; `written` counts every byte
# ever read; `close()` ends the readers (a daemon still holding a pipe cannot keep one alive).
# A line the limit cut is shown marked as such (CUT), never as a whole line nor dropped: a
# target whose last words are one line longer than the limit still shows their end.
from __future__ import annotations

import contextlib
import os
import select
import threading

OUTPUT_KEPT = 64 * 1024  # bytes of the target's output kept for the failure report
READ_CHUNK = 64 * 1024
CUT = "[...]"  # begins the first line shown when the limit cut off its beginning


class OutputRing:
    """The last OUTPUT_KEPT bytes the target printed, over all its starts."""

    def __init__(self, limit: int = OUTPUT_KEPT) -> None:
        self.limit = limit
        self.written = 0
        self._kept = bytearray()
        self._cut = False  # what is kept begins inside a line
        self._lock = threading.Lock()
        self._pipes: list[int] = []  # read ends still open
        self._closed = threading.Event()

    def pipe(self, banner: str = "") -> int:
        """A new pipe's write end for a child's stdout/stderr (the caller closes it once the
        child has it); `banner` goes into the output first."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        with self._lock:
            if banner:
                self._keep(banner.encode())
            self._pipes.append(read_end)
        threading.Thread(
            target=self._follow, args=(read_end,), name="incident-target-output", daemon=True
        ).start()
        return write_end

    def _follow(self, read_end: int) -> None:
        while not self._closed.is_set():
            with contextlib.suppress(OSError):  # closed under us: the check below says so
                select.select([read_end], [], [], 0.5)
            with self._lock:
                if read_end not in self._pipes:
                    return  # closed under us
                if self._drain(read_end):
                    self._pipes.remove(read_end)
                    os.close(read_end)
                    return

    def _drain(self, read_end: int) -> bool:
        """Read what `read_end` holds now (under the lock); True at its end."""
        while True:
            try:
                data = os.read(read_end, READ_CHUNK)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not data:
                return True
            self._keep(data)

    def _keep(self, data: bytes) -> None:
        self.written += len(data)
        kept = len(self._kept)
        excess = kept + len(data) - self.limit  # bytes to drop from the front
        if excess <= 0:
            self._kept += data
            return
        last_dropped = self._kept[excess - 1] if excess <= kept else data[excess - kept - 1]
        self._cut = last_dropped != ord("\n")
        if excess >= kept:
            self._kept = bytearray(data[excess - kept :])
        else:
            del self._kept[:excess]
            self._kept += data

    def tail(self, lines: int = 15) -> str:
        """The last `lines` lines printed so far (a first line cut by the limit begins with
        CUT)."""
        with self._lock:
            for read_end in list(self._pipes):
                if self._drain(read_end):
                    self._pipes.remove(read_end)
                    os.close(read_end)
            text = bytes(self._kept).decode(errors="replace")
            cut = self._cut
        shown = text.splitlines()
        if cut and shown:
            if shown[0]:
                shown[0] = CUT + shown[0]  # began before what is kept
            else:
                del shown[0]  # only the end of a line break ("\r|\n") was kept
        return "\n".join(shown[-lines:])

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for read_end in self._pipes:
                os.close(read_end)
            self._pipes.clear()
