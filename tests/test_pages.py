"""Paper pages rebuild from the store: committed rows are imported as runs of the recipe that made them,
and `prunelab report --paper` writes the page's tables from there."""
import json
import statistics
from pathlib import Path

import pytest

from prunelab.cli import main
from prunelab.errors import ConfigError
from prunelab.experiments import Store, load_plan
from prunelab.experiments.imports import import_rows, read_rows
from prunelab.report.pages import get_page, import_committed, list_pages, write_page

ROOT = Path(__file__).resolve().parents[1]


def test_lth_page_rebuilds_from_imported_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    store = Store(tmp_path / "store")
    assert [w for _, w in import_committed("lth", store)] == ["imported"] * 3
    files, data = write_page("lth", store, tmp_path / "page")
    assert data.coverage() == "`lth/lenet_mnist-10ep`: 3 of 3 runs done"
    committed = (ROOT / "docs/results/lth_mnist/table.md").read_text()
    assert (tmp_path / "page/table.md").read_text() == committed
    # independent check: the ticket's round-15 mean over the three seed files, with plain Python
    accs = [json.loads(line)["test_acc"] for p in sorted((ROOT / "docs/results/lth_mnist").glob("seed*.jsonl"))
            for line in p.read_text().splitlines() if '"variant": "ticket", "round": 15,' in line]
    assert len(accs) == 3
    row = next(line for line in committed.splitlines() if line.startswith("| 15 |"))
    assert row.split("|")[3].strip().startswith(f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}")
    # a second import leaves done runs alone
    assert [w for _, w in import_committed("lth", store)] == ["kept: already done"] * 3


def test_import_matches_each_group_to_exactly_one_planned_run(tmp_path):
    runs = load_plan("lth/lenet_mnist-10ep")
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("\n".join(json.dumps({"variant": "ticket", "round": r, "test_acc": 0.5 + r, "seed": s})
                                   for s in (0, 7) for r in (0, 1)))
    store = Store(tmp_path / "store")
    with pytest.raises(ConfigError, match=r"\{'seed': 7\} match 0 planned runs"):
        import_rows(store, runs, read_rows([rows_file]), {"seed": "seed"})
    assert store.runs() == []            # nothing written when any group fails to match
    with pytest.raises(ConfigError, match="the plan has 3 runs"):
        import_rows(store, runs, read_rows([rows_file]), {})
    with pytest.raises(ConfigError, match="lacks the --match column"):
        import_rows(store, runs, read_rows([rows_file]), {"seed": "nope"})
    with pytest.raises(ConfigError, match="no 'rate' there"):
        import_rows(store, runs, read_rows([rows_file]), {"rate": "seed"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"round": 0}\n')
    with pytest.raises(ConfigError, match="needs 'variant' and 'round'"):
        read_rows([bad])
    one = load_plan("lth/lenet_mnist-10ep", ["seed=0"])
    rows_file.write_text("\n".join(json.dumps({"variant": "ticket", "round": r, "test_acc": 0.25 * r}) for r in (0, 1)))
    (rid, what), = import_rows(store, one, read_rows([rows_file]), {}, note="hand-made")
    assert what == "imported" and store.get_run(rid)["status"] == "done"
    assert [m["test_acc"] for m in store.metric_rows([rid])] == [0.0, 0.25]
    record = json.loads((store.run_dir(rid) / "imported.json").read_text())
    assert record["note"] == "hand-made" and record["sources"][0]["path"] == str(rows_file)


def test_cli_import_and_report_paper(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    res = str(tmp_path / "store")
    assert main(["import", "--paper", "lth", "--results", res]) == 0
    assert main(["report", "--paper", "lth", "--results", res, "--out", str(tmp_path / "page")]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 runs done" in out and (tmp_path / "page/lth_mnist.png").stat().st_size > 10_000
    assert main(["report", "--paper", "ltj", "--results", res]) == 2
    assert "unknown page 'ltj'" in capsys.readouterr().err
    assert main(["import", "lth/lenet_mnist-10ep", "--results", res]) == 2   # rows missing


def test_every_page_names_existing_recipes():
    assert "lth" in list_pages()
    for name in list_pages():
        page = get_page(name)
        for rec in page.recipes + tuple(c.recipe for c in page.committed):
            assert load_plan(rec), f"page {name}: recipe {rec} plans no runs"
