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
    # every committed file is one planned run of the page's suite recipes, and every such run has its file
    data = page_data(get_page("cs"), store)
    suites = {rec for s in cs.SUITES for rec in s.groups.values()}
    assert sorted(rid for rid, _ in imported) == sorted(r.run_id for r in data.runs if data.recipe_of[r.run_id] in suites)

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


def test_rebuttal_table_from_stored_runs(tmp_path, monkeypatch):
    """Runs of cs/table_vgg16-small (as `prunelab run` stores them) give the highest sparsity within 2 % per
    method and seed, with the mean's t-based CI, beside the rebuttal's number."""
    from scipy import stats as st
    from prunelab.experiments import load_plan
    from prunelab.experiments.imports import import_rows
    from prunelab.report.pages import cs_rebuttal
    monkeypatch.setattr(cs_rebuttal, "plot", lambda rows, dense, model, path: path)
    runs = [r for r in load_plan("cs/table_vgg16-small") if r.spec.seed < 2]
    dense = {0: 0.60, 1: 0.62}
    drop = {0: {0.5: 0.0, 0.7: 0.0, 0.8: 0.005, 0.9: 0.013, 0.95: 0.03, 0.98: 0.2},     # 2 % of 0.60 = 0.012
            1: {0.5: 0.0, 0.7: 0.0, 0.8: 0.005, 0.9: 0.011, 0.95: 0.03, 0.98: 0.2}}     # 2 % of 0.62 = 0.0124
    source = tmp_path / "rows.jsonl"
    source.write_text("made by the test\n")
    store = Store(tmp_path / "store")
    for r in runs:
        p, s = r.spec.procedure, r.spec.seed

        def row(variant, rnd, sparsity, a):
            return {"variant": variant, "round": rnd, "kept": round(1000 * (1 - sparsity)), "total": 1000,
                    "remaining_pct": 100 * (1 - sparsity), "test_acc": a, "_source": str(source)}
        if p.kind == "oneshot":
            rows = [row("ticket", 0, 0.0, dense[s]), row("ticket", 1, p.sparsity, dense[s] - drop[s][p.sparsity])]
        elif p.kind == "gmp":   # passes up to 0.9 on seed 0, up to 0.95 on seed 1
            ok = p.final_sparsity <= (0.9 if s == 0 else 0.95)
            rows = [row("gmp", 0, p.final_sparsity, dense[s] - (0.0 if ok else 0.1))]
        elif p.kind == "l0":    # never within 2 %
            rows = [row("l0", 0, 0.3, 0.1), row("l0_fixed", 1, 0.3, 0.1)]
        else:
            rows = [row("search", 0, 0.99, 0.3), row("ticket", 1, 0.99, dense[s])]
        import_rows(store, [r], rows, {})
    files, data = write_page("cs", store, tmp_path / "page")
    text = (tmp_path / "page/table_vgg16/tables.md").read_text()
    lines = {}
    for line in text.splitlines():   # the first table (highest sparsity) comes first
        if line.startswith("| "):
            lines.setdefault(line.split(" | ")[0][2:], line.split(" | "))
    assert "Dense test accuracy per seed: 60.00, 62.00 %." in text
    # magnitude: seed 0 stops at 80 % (0.9 drops 0.013 > 0.012), seed 1 reaches 90 % (0.011 < 0.0124)
    half = st.t.ppf(0.975, 1) * st.tstd([80.0, 90.0]) / 2 ** 0.5
    assert lines["magnitude (one-shot)"][1:4] == ["80.0, 90.0", f"85.0 ± {half:.1f}", "97.5 |"]
    assert lines["GMP"][1] == "90.0, 95.0" and lines["GMP"][3] == "98.0 |"
    assert lines["ℓ0 (fixed mask, fine-tuned)"][1] == "none, none" and lines["ℓ0 (fixed mask, fine-tuned)"][3] == "32.0 |"
    assert lines["CS"][1] == "99.0, 99.0"          # the ticket row, not the search round
    assert "`cs/table_vgg16-small`: 40 of 60 runs done." in text
