"""Peak memory of a process, as the benchmark reports it."""

from __future__ import annotations

import ctypes
import resource
import sys
from pathlib import Path


def peak_rss_bytes(pid: int | None = None) -> int:
    """Peak resident set size of a process (None: this one), in bytes.

    On Linux this is VmHWM from /proc, the peak of the process's own address space.
    Not getrusage's ru_maxrss: that survives execve, so a daemon started by a large
    parent (the benchmark, holding every company's data) would report the parent's peak.
    Elsewhere: ru_maxrss for this process (kilobytes on Linux, bytes on macOS), 0 for others.
    """
    status = Path(f"/proc/{'self' if pid is None else pid}/status")
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if pid is not None:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 128 * 1024


def return_freed_buffers(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make large buffers go back to the operating system as soon as they are freed.

    glibc serves allocations above its mmap threshold (128 KiB) by mmap, but raises the
    threshold each time such a buffer is freed (up to 32 MiB); after the first list was
    freed, the next lists' buffers came from the heap and stayed resident after use
    (measured: a million-record hop 0 peaked 104 MiB above the idle daemon, 72 MiB with
    the threshold fixed). Setting it once turns that adjustment off.
    Returns False where the C library has no mallopt (not glibc): nothing changes there.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
