"""What the benchmarks print about the machine they ran on (shared by the scripts in this folder)."""
from __future__ import annotations

import os


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load() -> str:
    """The 1/5/15-minute load averages: other users' jobs share these cores."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"
