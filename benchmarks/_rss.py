"""Peak memory of the calling process alone, for the benchmarks that run each job in a fresh process."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_gib() -> float:
    """This process's own peak RSS. On Linux VmHWM: ru_maxrss of a child carries the parent's high-water
    mark over fork + exec (and RUSAGE_CHILDREN keeps the largest child), so after the data generator
    ran in the parent every job read the generator's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # kB
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / (1024**3 if sys.platform == "darwin" else 1024**2)
