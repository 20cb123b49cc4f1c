"""The result store: one SQLite database (WAL mode) at the results root, artifacts in ``runs/<run_id>/``.

Schema (versioned; see docs/store.md): ``runs`` (spec, status, lease, timestamps, versions, host, git
commit, error), ``metrics`` (one JSON row per run, variant and round), ``history`` (one JSON row per
evaluation during training), ``artifacts`` (paths relative to the root, sha256, size). Every process opens
its own connection; writes take the lock up front (``BEGIN IMMEDIATE``) and are retried while another
writer holds it, so concurrent workers lose nothing. Re-emitting a row (a resumed run recomputing a
round) replaces it: rows are keyed, never appended twice.
"""
from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..errors import ConfigError, PrunelabError

DB_NAME = "prunelab.db"
STATUSES = ("queued", "running", "done", "failed")
BUSY_TIMEOUT_MS = 30_000
WRITE_DEADLINE_S = 600.0


class StoreError(PrunelabError):
    """The database cannot be used (newer schema, locked for too long, not a prunelab store)."""


# migrations: MIGRATIONS[i] takes the schema from version i to i + 1 ----------------------------------
def _script(c: sqlite3.Connection, sql: str) -> None:
    # not executescript(): it commits first, and a migration must stay inside its transaction
    for stmt in sql.split(";"):
        if stmt.strip():
            c.execute(stmt)


def _v0_to_v1(c: sqlite3.Connection) -> None:
    _script(c, """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        label       TEXT NOT NULL,
        spec_json   TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        lease       TEXT,
        heartbeat   TEXT,
        created     TEXT NOT NULL,
        started     TEXT,
        ended       TEXT,
        prunelab_version TEXT,
        torch_version    TEXT,
        python_version   TEXT,
        host        TEXT,
        git_commit  TEXT,
        error       TEXT
    );
    CREATE TABLE metrics (
        run_id  TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        variant TEXT NOT NULL,
        round   INTEGER NOT NULL,
        data    TEXT NOT NULL,
        PRIMARY KEY (run_id, variant, round)
    );
    CREATE TABLE history (
        run_id    TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        variant   TEXT NOT NULL,
        round     INTEGER NOT NULL,
        iteration INTEGER NOT NULL,
        data      TEXT NOT NULL,
        PRIMARY KEY (run_id, variant, round, iteration)
    );
    CREATE TABLE artifacts (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        kind   TEXT NOT NULL,
        path   TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        bytes  INTEGER NOT NULL,
        PRIMARY KEY (run_id, kind)
    );
    CREATE INDEX runs_by_name ON runs(name, label);
    """)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v0_to_v1]
SCHEMA_VERSION = len(MIGRATIONS)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _is_busy(e: sqlite3.OperationalError) -> bool:
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


class Store:
    """A results root: ``<root>/prunelab.db`` and ``<root>/runs/<run_id>/``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        self.db_path = self.root / DB_NAME
        self._local = threading.local()   # one connection per thread and process

    # connection ------------------------------------------------------------------------------------
    def __getstate__(self):  # sent to worker processes as a path; each opens its own connection
        return {"root": self.root}

    def __setstate__(self, state):
        self.__init__(state["root"])

    @property
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None or getattr(self._local, "pid", None) != os.getpid():
            c = self._open()
            self._local.conn, self._local.pid = c, os.getpid()
        return c

    def _open(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        c = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                            check_same_thread=False)
        c.row_factory = sqlite3.Row
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._retry(lambda: c.execute("PRAGMA journal_mode = WAL"))
        c.execute("PRAGMA synchronous = NORMAL")   # WAL + NORMAL: a crash loses at most the last commits
        c.execute("PRAGMA foreign_keys = ON")
        self._migrate(c)
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    @staticmethod
    def _retry(fn):
        deadline = time.monotonic() + WRITE_DEADLINE_S
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)

    @contextmanager
    def _tx(self, c: Optional[sqlite3.Connection] = None):
        """A write transaction holding the write lock from its start (no upgrade deadlocks under WAL)."""
        c = c or self.conn
        self._retry(lambda: c.execute("BEGIN IMMEDIATE"))
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        self._retry(lambda: c.execute("COMMIT"))

    def _migrate(self, c: sqlite3.Connection) -> None:
        if self._version(c) == SCHEMA_VERSION:
            return
        with self._tx(c):
            # read again under the write lock: another process may have migrated meanwhile
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            v = self._version(c)
            if v > SCHEMA_VERSION:
                raise StoreError(f"{self.db_path} has schema version {v}, newer than this prunelab supports "
                                 f"({SCHEMA_VERSION}); upgrade prunelab")
            if v == 0:
                tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables - {"schema_version"}:
                    raise StoreError(f"{self.db_path} holds tables {sorted(tables)} but no prunelab schema "
                                     f"version; it is not a prunelab store")
                c.execute("DELETE FROM schema_version")
                c.execute("INSERT INTO schema_version (version) VALUES (0)")
            for step in MIGRATIONS[v:]:
                step(c)
            c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @staticmethod
    def _version(c: sqlite3.Connection) -> Optional[int]:
        try:
            row = c.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return None
            raise
        return row[0] if row else 0

    def schema_version(self) -> int:
        return self._version(self.conn) or 0

    # runs ------------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def add_run(self, run_id: str, name: str, label: str, spec_json: str) -> None:
        """Register a run as queued; a known run keeps its status (a finished run stays done)."""
        with self._tx() as c:
            c.execute("""INSERT INTO runs (run_id, name, label, spec_json, status, created)
                         VALUES (?, ?, ?, ?, 'queued', ?)
                         ON CONFLICT (run_id) DO UPDATE SET label = excluded.label,
                           status = CASE WHEN runs.status = 'failed' THEN 'queued' ELSE runs.status END""",
                      (run_id, name, label, spec_json, now()))

    def get_run(self, run_id: str) -> Optional[dict]:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def runs(self, status: Optional[Iterable[str]] = None) -> list[dict]:
        q, args = "SELECT * FROM runs", ()
        if status is not None:
            status = tuple(status)
            q += f" WHERE status IN ({','.join('?' * len(status))})"
            args = status
        return [dict(r) for r in self.conn.execute(q + " ORDER BY name, label, created", args)]

    def claim(self, run_id: str, lease: str, is_alive: Callable[[dict], bool], info: dict) -> Optional[dict]:
        """Mark the run running under ``lease`` unless a live holder has it; returns that holder's row."""
        with self._tx() as c:
            row = dict(c.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone())
            if row["status"] == "running" and row["lease"] != lease and is_alive(row):
                return row
            stamp = now()
            c.execute("""UPDATE runs SET status = 'running', lease = ?, heartbeat = ?, started = ?, ended = NULL,
                           error = NULL, prunelab_version = ?, torch_version = ?, python_version = ?, host = ?,
                           git_commit = ? WHERE run_id = ?""",
                      (lease, stamp, stamp, info.get("prunelab"), info.get("torch"), info.get("python"),
                       info.get("host"), info.get("git_commit"), run_id))
        return None

    def heartbeat(self, run_id: str, lease: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ? AND lease = ?", (now(), run_id, lease))

    def finish(self, run_id: str, status: str, error: Optional[str] = None, lease: Optional[str] = None) -> None:
        if status not in STATUSES:
            raise ConfigError(f"status {status!r} is not one of {STATUSES}")
        with self._tx() as c:
            q = "UPDATE runs SET status = ?, ended = ?, error = ? WHERE run_id = ?"
            args = [status, now(), error, run_id]
            if lease is not None:  # only the holder ends its own run
                q += " AND lease = ?"
                args.append(lease)
            c.execute(q, args)

    # metrics ---------------------------------------------------------------------------------------
    def put_rounds(self, run_id: str, rows: Iterable[dict], history: Iterable[dict] = ()) -> None:
        """Upsert per-round rows (``variant``, ``round`` + values) and per-evaluation history rows
        (``variant``, ``round``, ``iteration`` + values) in one transaction."""
        rows = [(run_id, r["variant"], int(r["round"]), _dumps({k: v for k, v in r.items()
                                                                if k not in ("variant", "round")}))
                for r in rows]
        hist = [(run_id, h["variant"], int(h["round"]), int(h["iteration"]),
                 _dumps({k: v for k, v in h.items() if k not in ("variant", "round", "iteration")}))
                for h in history]
        with self._tx() as c:
            c.executemany("""INSERT INTO metrics (run_id, variant, round, data) VALUES (?, ?, ?, ?)
                             ON CONFLICT (run_id, variant, round) DO UPDATE SET data = excluded.data""", rows)
            c.executemany("""INSERT INTO history (run_id, variant, round, iteration, data) VALUES (?, ?, ?, ?, ?)
                             ON CONFLICT (run_id, variant, round, iteration) DO UPDATE SET data = excluded.data""",
                          hist)

    def metric_rows(self, run_ids: Optional[Iterable[str]] = None) -> list[dict]:
        q = "SELECT run_id, variant, round, data FROM metrics"
        args: tuple = ()
        if run_ids is not None:
            args = tuple(run_ids)
            q += f" WHERE run_id IN ({','.join('?' * len(args))})"
        return [{"run_id": r["run_id"], "variant": r["variant"], "round": r["round"], **json.loads(r["data"])}
                for r in self.conn.execute(q, args)]

    def history_rows(self, run_id: str) -> list[dict]:
        return [{"variant": r["variant"], "round": r["round"], "iteration": r["iteration"],
                 **json.loads(r["data"])}
                for r in self.conn.execute("SELECT * FROM history WHERE run_id = ? "
                                           "ORDER BY round, variant, iteration", (run_id,))]

    # artifacts -------------------------------------------------------------------------------------
    def put_artifact(self, run_id: str, kind: str, path: Path, sha256: str) -> None:
        path = Path(path)
        rel = os.path.relpath(path, self.root)
        with self._tx() as c:
            c.execute("""INSERT INTO artifacts (run_id, kind, path, sha256, bytes) VALUES (?, ?, ?, ?, ?)
                         ON CONFLICT (run_id, kind) DO UPDATE SET path = excluded.path,
                           sha256 = excluded.sha256, bytes = excluded.bytes""",
                      (run_id, kind, rel, sha256, path.stat().st_size))

    def artifacts(self, run_id: str) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM artifacts WHERE run_id = ? ORDER BY kind", (run_id,))
        return [{**dict(r), "abspath": self.root / r["path"]} for r in rows]


def _dumps(d: dict) -> str:
    # NaN/inf are legal results (a diverged control); JSON has no literal for them but Python reads its own
    return json.dumps(d, sort_keys=True)
