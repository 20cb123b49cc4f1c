"""The continuous-sparsification page rebuilds from the store: its committed rows (one file per run of the
examples script it replaced) import as runs of the page's recipes and the rebuilt tables equal the committed."""
import json
from pathlib import Path

from prunelab.experiments import Store
from prunelab.report.pages import get_page, import_committed, page_data, write_page
from prunelab.report.pages import cs

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs/results/continuous_sparsification"


def _raw(pattern: str) -> list[dict]:
    return [json.loads(line) for p in sorted(OUT.glob(pattern)) for line in p.read_text().splitlines()]


def test_cs_page_rebuilds_from_imported_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(cs, "plot", lambda df, suite, path: None)   # the tables are what is compared; plots are slow
    store = Store(tmp_path / "store")
    imported = import_committed("cs", store)
    assert [w for _, w in imported] == ["imported"] * 73
    # every committed file is one planned run of the page's recipes, and every planned run has its file
    data = page_data(get_page("cs"), store)
    assert sorted(rid for rid, _ in imported) == sorted(r.run_id for r in data.runs)

    files, data = write_page("cs", store, tmp_path / "page")
    for sub in ("", "vgg11/"):
        rebuilt = (tmp_path / "page" / sub / "tables.md").read_text()
        assert rebuilt == (OUT / sub / "tables.md").read_text()   # the committed page is this output
    assert "`cs/lenet_mnist_noscale-page`: 1 of 1 runs done" in (tmp_path / "page/tables.md").read_text()

    # the epochs the page takes from the specs are the ones the old script recorded in the rows
    for suite in cs.SUITES:
        df = cs.suite_frame(data, suite)
        for rid, g in df.groupby("run_id"):
            row = data.rows(rid)[0]
            assert (g["train_epochs"].iloc[0], g["rewind_epochs"].iloc[0]) == (row["train_epochs"],
                                                                              row["rewind_epochs"])

    # independent check: CS's highest sparsity within 2 % of dense (LeNet), plain Python over the jsonl rows
    dense = {r["seed"]: r["test_acc"] for r in _raw("magnitude/*.jsonl") if r["round"] == 0}
    best = {s: max(1 - r["remaining_pct"] / 100 for r in _raw("cs_prune/*.jsonl")
                   if r["variant"] == "ticket" and r["seed"] == s and r["test_acc"] >= 0.98 * d)
            for s, d in dense.items()}
    line = next(x for x in (OUT / "tables.md").read_text().splitlines() if x.startswith("| CS |"))
    per_seed, mean = line.split("|")[2:4]
    assert per_seed.strip() == ", ".join(f"{100 * best[s]:.2f}" for s in sorted(best))
    assert mean.strip() == f"{100 * sum(best.values()) / len(best):.2f}"
