"""SharedLedger: rate-limit counts shared by the processes of one machine (an mmap'd file).

Several strategy processes on one IP spend one budget at the exchange, so each must see the
others' requests. The counts live in a memory-mapped file as int64 words; every
read-modify-write of them happens under ``flock(LOCK_EX)`` on the file:

- flock, not fcntl.lockf/F_SETLK: a POSIX record lock belongs to the process, so it neither
  excludes two threads of one process nor survives the process closing *any* descriptor of
  the file; flock belongs to the open file description, and the kernel drops it when the
  holder dies (a crashed strategy leaves no lock held, man 2 flock).
- A lock-free compare-and-swap on the mapping would save the two system calls, but Python
  has no atomic instruction on shared memory without a C helper; the lock is held for a few
  microseconds (no I/O, no allocation inside), so contention stays short. A threading.Lock
  in front makes one SharedLedger object safe to share between the threads of a process.
- A process that dies between two word writes leaves at most one count short, never a torn
  int64 (aligned 8-byte stores are single instructions on the platforms we support).

The policy layer's one object that touches the OS: it blocks only while another process
holds the lock (microseconds), never sleeps, and never reads a clock.

Layout (int64 words, native byte order: one machine): word 0 magic, 1 file words,
2 next free data word, 3 entry count; entries from word 8, ENTRY_WORDS each (key digest in
two words, data offset, data words); data from word DATA_START.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import tempfile
import threading
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; fastpool still imports
    fcntl = None  # type: ignore[assignment]

MAGIC = int.from_bytes(b"FPLEDG01", "little", signed=True)
ENTRY_WORDS = 4
MAX_ENTRIES = 120
DATA_START = 512  # words: the header and directory fit in the first 4 KiB
DEFAULT_SIZE = 256 * 1024  # bytes: 30 000 data words, dozens of limits


def _default_dir() -> str:
    # tmpfs where there is one: counts must never wait on a disk, and a reboot (which
    # resets CLOCK_MONOTONIC, the sliding windows' time base) clears it.
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


class SharedLedger:
    """Rate-limit counts in a file mapped by every process that opens the same name.

    ``SharedLedger("binance-main")`` maps ``/dev/shm/fastpool-binance-main.ledger`` (or the
    temp dir); a value with a "/" is taken as a path. Processes that open it later join the
    counts already there. Pass it to ``RateLimiter(..., ledger=)`` (or the pool's
    ``rate_ledger=``); each RateLimit is keyed by ``RateLimit.key``."""

    __slots__ = ("path", "_fd", "_map", "_words", "_thread_lock", "_size", "__weakref__")

    path: str  #: the ledger file this one maps

    def __init__(self, name: str | os.PathLike[str], *, size: int = DEFAULT_SIZE) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise OSError("SharedLedger needs flock(2), which this platform lacks")
        if not isinstance(size, int) or size < (DATA_START + 64) * 8 or size % 8:
            raise ValueError(f"SharedLedger size must be a multiple of 8 bytes of at least "
                             f"{(DATA_START + 64) * 8}, got {size!r}")
        text = os.fspath(name)
        if not isinstance(text, str) or not text:
            raise ValueError(f"SharedLedger needs a name or a path, got {name!r}")
        if "/" not in text:
            text = os.path.join(_default_dir(), f"fastpool-{text}.ledger")
        self.path = text
        self._thread_lock = threading.Lock()
        fd = os.open(text, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                have = os.fstat(fd).st_size
                if have == 0:
                    os.ftruncate(fd, size)
                    have = size
                elif have < (DATA_START + 64) * 8 or have % 8:
                    raise ValueError(f"{text} is not a fastpool ledger (size {have})")
                mapping = mmap.mmap(fd, have)
                words = memoryview(mapping).cast("q")
                if words[0] == 0:
                    words[1] = have // 8
                    words[2] = DATA_START
                    words[3] = 0
                    words[0] = MAGIC
                elif words[0] != MAGIC or words[1] != have // 8:
                    words.release()
                    mapping.close()
                    raise ValueError(f"{text} is not a fastpool ledger")
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._map = mapping
        self._words = words
        self._size = have

    # -- the lock around every read-modify-write ------------------------------------------

    def lock(self) -> None:
        """Take the ledger (this process's threads first, then the other processes)."""
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def unlock(self) -> None:
        """Give the ledger back (what lock() took)."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def __enter__(self) -> SharedLedger:
        self.lock()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unlock()

    # -- regions --------------------------------------------------------------------------

    def region(self, key: str, nwords: int) -> memoryview:
        """The int64 words kept for ``key`` (allocated zeroed on first use, by whichever
        process comes first); the same key must always ask for the same size."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        k0, k1 = struct.unpack("=qq", digest)
        words = self._words
        with self:
            for i in range(words[3]):
                base = 8 + i * ENTRY_WORDS
                if words[base] == k0 and words[base + 1] == k1:
                    if words[base + 3] != nwords:
                        raise ValueError(f"ledger {self.path}: {key!r} is kept with "
                                         f"{words[base + 3]} words, not {nwords}")
                    offset = words[base + 2]
                    return words[offset:offset + nwords]
            count = words[3]
            offset = words[2]
            if count >= MAX_ENTRIES or offset + nwords > words[1]:
                raise ValueError(f"ledger {self.path} is full: make it larger with size=")
            base = 8 + count * ENTRY_WORDS
            words[base] = k0
            words[base + 1] = k1
            words[base + 2] = offset
            words[base + 3] = nwords
            words[2] = offset + nwords
            words[3] = count + 1  # last: a reader never sees a half-written entry
            return words[offset:offset + nwords]

    def close(self) -> None:
        """Unmap and close (regions handed out must no longer be used)."""
        if self._fd < 0:
            return
        try:
            self._words.release()
            self._map.close()
        except BufferError:
            # Regions (memoryview slices) still alive keep the mapping: the kernel drops
            # it when the process exits.
            pass
        os.close(self._fd)
        self._fd = -1

    def __reduce__(self) -> tuple[Any, ...]:
        # A child process (multiprocessing spawn) reopens the same file: it joins the
        # counts, exactly like a process that opens the name itself.
        return (SharedLedger, (self.path,), None, None, None)

    def __repr__(self) -> str:
        return f"SharedLedger({self.path!r})"
