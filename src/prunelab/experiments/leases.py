"""Leases on runs: who is computing a run, and whether that holder may still be alive.

A run being computed is claimed with a lease (host, pid and the process's start time, plus a heartbeat),
so a run left ``running`` by a dead process is simply taken over, while a live holder (another worker
computing the same spec) is waited for.
"""
from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timezone

from .store import Store

HEARTBEAT_S = 30.0
STALE_AFTER_S = 180.0   # a lease from another host without a heartbeat for this long is abandoned


def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time) of a process from /proc (Linux); ("?", "?") where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return "?", "?"


def _process_start(pid: int) -> str:
    """Start time of a process (clock ticks since boot), so a reused pid is not taken for the holder."""
    return _proc_stat(pid)[1]


def my_lease() -> str:
    return f"{socket.gethostname()}|{os.getpid()}|{_process_start(os.getpid())}"


def lease_alive(row: dict) -> bool:
    """Whether the holder of a ``running`` row may still be computing it."""
    try:
        host, pid, start = (row.get("lease") or "").split("|")
        pid = int(pid)
    except ValueError:
        return False
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        state, started = _proc_stat(pid)
        if state in ("Z", "X"):   # exited, not yet reaped by its parent
            return False
        return start == "?" or started == start
    beat = row.get("heartbeat")
    if not beat:
        return False
    age = (datetime.now(timezone.utc) - datetime.fromisoformat(beat)).total_seconds()
    return age < STALE_AFTER_S


class _Heartbeat:
    """Refreshes the lease's heartbeat from a thread while a run computes (for holders on other hosts)."""

    def __init__(self, store: Store, run_id: str, lease: str, every: float = HEARTBEAT_S):
        self.store, self.run_id, self.lease, self.every = store, run_id, lease, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{run_id}")

    def _loop(self):
        while not self._stop.wait(self.every):
            try:
                self.store.heartbeat(self.run_id, self.lease)
            except Exception:  # a missed beat only matters after STALE_AFTER_S; never kill the run for it
                pass
        self.store.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
