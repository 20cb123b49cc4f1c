"""The GST page (docs/results/stability.md) rebuilds from its committed rows imported into a store: every table
file equals the committed one, and the numbers agree with the raw rows.

The committed rows predate the import format: examples/stability.py wrote one JSON line per run keyed by
``config`` (the variant) and ``seed``, without ``variant``/``round`` (the page's ``Committed`` entries fill
them), and the F2_RN rows are a CSV of ``prunelab results``.
"""
import csv
import json
import statistics
from pathlib import Path

import pandas as pd
import pytest

import prunelab.report
from prunelab.experiments import Store, load_plan
from prunelab.experiments.imports import import_rows
from prunelab.report.pages import get_page, import_committed, write_page
from prunelab.report.pages import stability

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs/results/stability"
pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, on equal values
TABLES = ("tables.md", "summary.csv", "followup/tables.md", "followup/summary.csv", "followup/combined.md",
          "resnet18/tables.md")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page rebuilt from the imported rows (plots stubbed: drawing 11 figures takes half a minute)."""
    tmp = tmp_path_factory.mktemp("stability")
    store = Store(tmp / "store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        assert [w for _, w in import_committed("stability", store)] == ["imported"] * (55 + 20 + 20 + 12)
    plotted = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prunelab.report, "plot_stability",
                   lambda df, path, *a, **k: plotted.append((Path(path).name, len(df))) or [])
        files, data = write_page("stability", store, tmp / "page")
    return tmp / "page", data, plotted


def test_stability_page_rebuilds_from_imported_rows(page):
    out, data, plotted = page
    assert data.coverage() == ("`stability/vgg11_cifar10-page`: 55 of 55 runs done; "
                               "`stability/vgg11_cifar10_half-page`: 40 of 40 runs done; "
                               "`stability/f2_resnet18_cifar10-page`: 12 of 12 runs done; "
                               "`stability/f4_resnet_sgd-small`: 0 of 25 runs done")
    assert not (out / "f4").exists()                     # no F4 run done: no F4 section
    for name in TABLES:
        rebuilt, committed = (out / name).read_text(), (COMMITTED / name).read_text()
        assert rebuilt == committed, name
    assert sorted(plotted) == sorted([
        ("stability_vs_accuracy", 55), ("stability_vs_gap", 55), ("stability_vs_hessian_sum", 14),
        ("stability_vs_grad_cov_trace", 14), ("stability_vs_accuracy", 20), ("stability_vs_gap", 20),
        ("stability_vs_accuracy_all", 40)])


def test_recipes_describe_the_committed_runs():
    # the F2_RN recipe hashes to the run ids `prunelab results` recorded
    recorded = [r["run_id"] for r in csv.DictReader((COMMITTED / "resnet18/runs.csv").open())]
    assert recorded == [r.run_id for r in load_plan(stability.RN18)]
    # the VGG recipes plan one run per committed row, flatness exactly where the row has it
    for rec, files in ((stability.MAIN, ["runs.jsonl"]),
                       (stability.HALF, ["followup/runs.jsonl", "followup/extra/runs.jsonl"])):
        rows = [json.loads(line) for f in files for line in (COMMITTED / f).read_text().splitlines()]
        plan = {(r.spec.procedure.config, r.spec.seed): r.spec.procedure for r in load_plan(rec)}
        assert sorted(plan) == sorted((r["config"], r["seed"]) for r in rows)
        assert all((plan[r["config"], r["seed"]].flatness is not None) == ("hessian_sum" in r) for r in rows)


def test_numbers_agree_with_the_raw_rows(page):
    out = page[0]

    def jsonl(name):
        return [json.loads(line) for line in (COMMITTED / name).read_text().splitlines()]

    def cell(table, start, col):
        return next(l for l in (out / table).read_text().splitlines() if l.startswith(start)).split(" | ")[col]

    # main: prune_L_r5's mean best test accuracy over its five seeds
    best = [r["best_test_acc"] for r in jsonl("runs.jsonl") if r["config"] == "prune_L_r5"]
    assert len(best) == 5
    assert cell("tables.md", "| prune_L_r5 |", 3).startswith(f"{100 * statistics.mean(best):.2f} ± ")
    # follow-up: no_pruning's best test accuracy over epochs >= 6, from the epoch histories
    window = [100 * max(h["test_acc"] for h in r["history"] if h["epoch"] >= 6)
              for r in jsonl("followup/runs.jsonl") if r["config"] == "no_pruning"]
    assert cell("followup/combined.md", "| no_pruning |", 4) == \
        f"{statistics.mean(window):.2f} ± {statistics.stdev(window):.2f}" == "45.54 ± 1.35"
    # F2_RN: the unpruned config's mean best test accuracy, as the page text quotes it
    rn = [float(r["best_test_acc"]) for r in csv.DictReader((COMMITTED / "resnet18/runs.csv").open())
          if r["variant"] == "F2_RN_0"]
    assert cell("resnet18/tables.md", "| F2_RN_0 (no pruning) |", 3).startswith(f"{100 * statistics.mean(rn):.2f} ± ")
    assert "| F2_RN_0 (no pruning) | 3 | 100.00 ± 0.00 | 44.65 ± 3.06 | 54.09 ± 3.71 |" in \
        (ROOT / "docs/results/stability.md").read_text()


def test_computed_runs_read_their_history_from_the_store(tmp_path, monkeypatch):
    """Runs of `prunelab run` carry no embedded history or final_test_acc: the page takes the store's epoch
    history and the row's test_acc (here: stand-in rows and histories for the follow-up's 40 runs)."""
    monkeypatch.setattr(prunelab.report, "plot_stability", lambda *a, **k: [])
    store = Store(tmp_path / "store")
    source = tmp_path / "stand-in.jsonl"
    source.write_text("")
    rows, hist = [], []
    for i, run in enumerate(load_plan(stability.HALF)):
        key = {"_c": run.spec.procedure.config, "_s": run.spec.seed, "variant": run.spec.procedure.config, "round": 0}
        rows.append({**key, "test_acc": 0.40 + 0.001 * i, "mean_stability": 90.0 + i % 5, "best_test_acc": 0.45,
                     "gen_gap": 0.3, "best_epoch": 9.0, "events": [], "_source": str(source)})
        hist += [{**key, "iteration": 32 * e, "epoch": float(e), "test_acc": 0.30 + 0.01 * e,
                  "train_running_acc": 0.50 + 0.04 * e} for e in range(1, 11)]
    import_rows(store, load_plan(stability.HALF), rows, {"procedure.config": "_c", "seed": "_s"}, history=hist)
    files, data = write_page("stability", store, tmp_path / "page")
    assert data.coverage().startswith("`stability/vgg11_cifar10-page`: 0 of 55 runs done; "
                                      "`stability/vgg11_cifar10_half-page`: 40 of 40 runs done")
    assert not (tmp_path / "page/tables.md").exists()           # nothing done of the main recipe: no table
    row = next(l for l in (tmp_path / "page/followup/combined.md").read_text().splitlines()
               if l.startswith("| no_pruning |")).split(" | ")
    # no_pruning is case 0: its seeds are runs 0-4 (stability 90..94, test_acc 0.400..0.404); the best of
    # epochs >= 6 and the final training accuracy come from the stored history (epoch 10: 40 % test, 90 % train)
    assert row[2:8] == ["92.00 ± 1.58", "45.00 ± 0.00", "40.00 ± 0.00", "40.20 ± 0.16", "90.0 ± 0.0", "30.0 ± 0.0"]
    assert row[8] == "50.0 ± 0.0"     # the final gap, 90 % train − 40 % test, from the history too


def test_import_committed_reads_the_page_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert len(import_committed("stability", Store(tmp_path / "store"))) == 107


def test_f4_section_from_stored_runs(tmp_path, monkeypatch):
    """F4 runs (as `prunelab run stability/f4_resnet_sgd-small` stores them) give the f4/ tables: per-config
    CIs, the final training accuracy from the epoch history, correlations with p-values."""
    from scipy import stats as st
    monkeypatch.setattr(prunelab.report, "plot_stability", lambda df, path, *a, **k: [])
    runs = [r for r in load_plan(stability.F4) if r.spec.seed < 3 and r.spec.procedure.config in ("F4_base", "F4_0", "F4_1")]
    stab = {"F4_base": (100.0, 100.0, 100.0), "F4_0": (99.0, 98.0, 97.0), "F4_1": (96.0, 95.5, 94.0)}
    best = {"F4_base": (0.50, 0.51, 0.49), "F4_0": (0.52, 0.52, 0.50), "F4_1": (0.53, 0.55, 0.52)}
    rows, hist = [], []
    source = tmp_path / "synthetic.jsonl"
    source.write_text("made by the test\n")
    for r in runs:
        c, s = r.spec.procedure.config, r.spec.seed
        n = 0 if c == "F4_base" else 3
        events = [{"epoch": 40 + 30 * i, "iteration": 10 * (41 + 30 * i), "acc_pre": 0.4, "acc_post": 0.39}
                  for i in range(n)]
        rows.append({"variant": c, "round": 0, "seed": s, "kept": 0, "total": 0, "remaining_pct": 100.0,
                     "test_acc": best[c][s] - 0.01, "mean_stability": stab[c][s], "best_test_acc": best[c][s],
                     "gen_gap": 0.99 - best[c][s], "n_events": n, "events": events, "_source": str(source)})
        hist += [{"variant": c, "round": 0, "seed": s, "iteration": 10 * e, "epoch": float(e),
                  "test_acc": best[c][s] - 0.01, "train_running_acc": 0.9 + e / 1650} for e in (1, 164, 165)]
    store = Store(tmp_path / "store")
    import_rows(store, runs, rows, {"procedure.config": "variant", "seed": "seed"}, history=hist)
    files, data = write_page("stability", store, tmp_path / "page")
    text = (tmp_path / "page/f4/tables.md").read_text()
    assert not (tmp_path / "page/tables.md").exists()        # only F4 runs are done
    line = next(l for l in text.splitlines() if l.startswith("| F4_0 (Prune_S, r=30) | 3 |"))
    half = st.t.ppf(0.975, 2) * 1.0 / 3 ** 0.5                # std of 99, 98, 97 is 1
    assert line.split(" | ")[2] == f"98.00 ± {half:.2f}"
    assert line.split(" | ")[5] == "100.00 ± 0.00"           # final training accuracy: 0.9 + 165/1650
    assert "| 1.00 ± 0.00 |" in line                          # 0.40 -> 0.39 at every event
    all_runs = [l for l in text.splitlines() if l.startswith("| all runs | best_test_acc |")][0].split(" | ")
    s_all = [v for c in stab for v in stab[c]]
    b_all = [100 * v for c in best for v in best[c]]
    assert all_runs[3] == f"{st.pearsonr(s_all, b_all)[0]:.3f}" and all_runs[5] == f"{st.kendalltau(s_all, b_all)[0]:.3f}"
    assert "`stability/f4_resnet_sgd-small`: 9 of 25 runs done" in text
    assert "| F4_1 | F4_base |" in text                      # Welch test against the unpruned runs
