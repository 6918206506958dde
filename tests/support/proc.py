"""/proc readings of a process (this one by default): memory, threads, CPU time (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def proc_status(pid: int | str, key: str) -> int:
    """A number from /proc/PID/status (``VmRSS`` and ``VmHWM`` are in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size (VmRSS) in MB (10^6 bytes)."""
    return proc_status(pid, "VmRSS") * 1024 / 1e6


def peak_rss_mb(pid: int | str = "self") -> float:
    """The most the process ever held (VmHWM), in MB."""
    return proc_status(pid, "VmHWM") * 1024 / 1e6


def os_threads(pid: int | str = "self") -> int:
    return proc_status(pid, "Threads")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of the process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")
