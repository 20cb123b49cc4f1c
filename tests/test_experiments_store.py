"""The SQLite store: schema and migrations, keyed upserts, concurrent writers, leases."""
import multiprocessing as mp
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from prunelab.experiments import SCHEMA_VERSION, Store, StoreError
from prunelab.experiments.leases import lease_alive, my_lease
from prunelab.experiments import store as store_mod


def test_schema_is_created_versioned_and_in_wal_mode(tmp_path):
    s = Store(tmp_path)
    assert s.schema_version() == SCHEMA_VERSION == 1
    c = sqlite3.connect(tmp_path / "prunelab.db")
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "runs", "metrics", "history", "artifacts"} <= tables
    assert c.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


def test_migrations_run_in_order_and_a_newer_schema_is_refused(tmp_path, monkeypatch):
    Store(tmp_path).add_run("r1", "n", "l", "{}")

    def v1_to_v2(c):
        c.execute("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'migrated'")

    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS + [v1_to_v2])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 2)
    s = Store(tmp_path)
    assert s.schema_version() == 2
    assert s.get_run("r1")["note"] == "migrated"       # old rows kept, new column filled
    monkeypatch.undo()
    with pytest.raises(StoreError, match="schema version 2, newer than this prunelab supports \\(1\\)"):
        Store(tmp_path).runs()


def test_a_foreign_database_is_not_taken_over(tmp_path):
    c = sqlite3.connect(tmp_path / "prunelab.db")
    c.execute("CREATE TABLE stuff (x)")
    c.commit()
    c.close()
    with pytest.raises(StoreError, match="not a prunelab store"):
        Store(tmp_path).runs()


def test_rows_are_keyed_a_reemitted_round_replaces_its_row(tmp_path):
    s = Store(tmp_path)
    s.add_run("r1", "n", "l", "{}")
    s.put_rounds("r1", [{"variant": "ticket", "round": 0, "test_acc": 0.5}],
                 [{"variant": "ticket", "round": 0, "iteration": 10, "test_acc": 0.4}])
    s.put_rounds("r1", [{"variant": "ticket", "round": 0, "test_acc": 0.6}],
                 [{"variant": "ticket", "round": 0, "iteration": 10, "test_acc": 0.45}])
    assert s.metric_rows() == [{"run_id": "r1", "variant": "ticket", "round": 0, "test_acc": 0.6}]
    assert s.history_rows("r1") == [{"variant": "ticket", "round": 0, "iteration": 10, "test_acc": 0.45}]
    # a finished run stays finished when queued again; a failed one is queued again
    s.finish("r1", "done")
    s.add_run("r1", "n", "other label", "{}")
    assert (s.get_run("r1")["status"], s.get_run("r1")["label"]) == ("done", "other label")
    s.add_run("r2", "n", "l", "{}")
    s.finish("r2", "failed", error="boom")
    s.add_run("r2", "n", "l", "{}")
    assert s.get_run("r2")["status"] == "queued"


def _writer(root, worker, n_runs, rounds):
    s = Store(root)
    for i in range(n_runs):
        rid = f"run{i:03d}"           # both workers write the same runs: upserts, never duplicates
        s.add_run(rid, "stress", f"w{worker}", "{}")
        for r in range(rounds):
            s.put_rounds(rid, [{"variant": "ticket", "round": r, "by": worker},
                               {"variant": f"only{worker}", "round": r}],
                         [{"variant": "ticket", "round": r, "iteration": it} for it in range(3)])
        s.finish(rid, "done")


def test_two_processes_writing_at_once_lose_no_rows(tmp_path):
    Store(tmp_path).runs()   # create the schema first; the workers race on everything else
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 30, 4)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    c = sqlite3.connect(tmp_path / "prunelab.db")
    assert c.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM runs").fetchone() == (30, 30)
    # per run and round: the shared ticket row once, and each worker's own row
    assert c.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 30 * 4 * 3
    assert c.execute("SELECT COUNT(*) FROM (SELECT DISTINCT run_id, variant, round FROM metrics)").fetchone()[0] \
        == 30 * 4 * 3
    assert c.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 30 * 4 * 3
    assert c.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0] == 30


def test_leases_of_dead_or_silent_holders_are_not_alive():
    assert lease_alive({"lease": my_lease()})
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not lease_alive({"lease": f"{host}|{gone.pid}|?"})
    if sys.platform.startswith("linux"):
        # our pid with another start time: a reused pid of a holder long gone
        _, pid, start = my_lease().split("|")
        assert not lease_alive({"lease": f"{host}|{pid}|{int(start) + 1}"})
    fresh = datetime.now(timezone.utc).isoformat()
    old = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    assert lease_alive({"lease": "elsewhere|1|1", "heartbeat": fresh})
    assert not lease_alive({"lease": "elsewhere|1|1", "heartbeat": old})
    assert not lease_alive({"lease": None})
