"""Rows computed outside the store (the committed ``docs/results`` rows of the old example scripts) become
runs of a recipe, so that pages are built from the store alone.

Each group of rows (by the values of the ``match`` columns, e.g. ``seed``) is matched to the one planned run
of the recipe whose spec has those values; the run is stored ``done`` with the rows, the history when given,
and one artifact, ``imported``: a JSON file holding the source files' paths and sha256 and the rows as
read. A run already ``done`` in the store is left alone (computed runs win over imported ones).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..io import atomic_write_bytes, sha256_file
from .plan import PlannedRun
from .store import Store

RESERVED = ("run_id", "name", "label", "model", "dataset", "procedure")


def _spec_value(run: PlannedRun, path: str) -> Any:
    node: Any = run.spec.model_dump(mode="json")
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"--match {path!r}: the spec has no {part!r} there")
        node = node[part]
    return node


def _file_rows(p: Path) -> list[tuple[int, Any]]:
    if p.suffix == ".csv":   # e.g. `prunelab results --csv`: empty cells are absent values
        import pandas as pd
        records = json.loads(pd.read_csv(p).to_json(orient="records"))   # plain Python numbers
        return [(i, {k: v for k, v in r.items() if v is not None}) for i, r in enumerate(records, 2)]
    out = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append((i, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{p}:{i} is not a JSON object: {e}") from None
    return out


def read_rows(paths: Sequence[str | Path], defaults: Mapping[str, Any] = {},
              copies: Mapping[str, str] = {}) -> list[dict]:
    """Rows of JSON-lines files (one JSON object per line) or CSV files (a header, one row per line), with
    ``_source`` naming the file. Rows made before the store's format may lack columns: ``copies`` fills a
    missing column from another (``{"variant": "config"}``), ``defaults`` with a constant (``{"round": 0}``)."""
    rows = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise ConfigError(f"rows file {str(p)!r} does not exist")
        for i, row in _file_rows(p):
            if not isinstance(row, dict):
                raise ConfigError(f"{p}:{i} is not a JSON object")
            for dst, src in copies.items():
                if dst not in row and src in row:
                    row[dst] = row[src]
            row = {**defaults, **row}
            if "variant" not in row or "round" not in row:
                raise ConfigError(f"{p}:{i}: a row needs 'variant' and 'round', got {sorted(row)}")
            rows.append({**row, "_source": str(p)})
    return rows


def import_rows(store: Store, runs: Sequence[PlannedRun], rows: Sequence[dict], match: Mapping[str, str],
                note: str = "", history: Sequence[dict] = ()) -> list[tuple[str, str]]:
    """Store ``rows`` as runs of ``runs`` (a recipe's plan); ``match`` maps spec paths to row columns
    (``{"seed": "seed"}``); with no ``match`` the plan must hold one run and every row is that run's.
    Returns (run_id, "imported" | "kept: already done") per matched run. Every group must match exactly
    one planned run, else nothing is written."""
    if not match and len(runs) != 1:
        raise ConfigError(f"the plan has {len(runs)} runs: say which one each row belongs to with "
                          f"--match SPEC_PATH=COLUMN (e.g. seed=seed), or fix the others with --set")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        missing = [c for c in match.values() if c not in r]
        if missing:
            raise ConfigError(f"row {r} of {r['_source']} lacks the --match column(s) {missing}")
        groups.setdefault(tuple(r[c] for c in match.values()), []).append(r)
    plan: dict[tuple, PlannedRun] = {}
    for key in groups:
        hits = [run for run in runs if all(_spec_value(run, p) == v for p, v in zip(match, key))]
        if len(hits) != 1:
            want = dict(zip(match, key))
            raise ConfigError(f"rows with {want} match {len(hits)} planned runs of the recipe (need exactly "
                              f"1); add --match keys or pick the recipe that describes how they were made")
        plan[key] = hits[0]
    out = []
    for key, group in groups.items():
        run = plan[key]
        rid = run.run_id
        store.add_run(rid, run.spec.name, run.label, run.spec.model_dump_json())
        if store.get_run(rid)["status"] == "done":
            out.append((rid, "kept: already done"))
            continue
        sources = sorted({r["_source"] for r in group})
        drop = set(RESERVED) | (set(match.values()) - {"variant", "round"}) | {"_source"}
        clean = [{k: v for k, v in r.items() if k not in drop} for r in group]
        record = {"note": note, "sources": [{"path": s, "sha256": sha256_file(s)} for s in sources],
                  "match": dict(match), "rows": clean}
        path = store.run_dir(rid) / "imported.json"
        atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True).encode())
        hist = [h for h in history if all(h.get(c) == v for c, v in zip(match.values(), key))]
        store.put_rounds(rid, clean, [{k: v for k, v in h.items() if k not in drop} for h in hist])
        store.put_artifact(rid, "imported", path, sha256_file(path))
        store.finish(rid, "done", error=None)
        out.append((rid, "imported"))
    return out
