"""The sanity-checks page (docs/results/sanity_checks.md) rebuilds from its committed rows imported into a
store: both table sets equal the committed files, and the numbers agree with the raw rows."""
import json
import os
import statistics
from pathlib import Path

import pandas as pd
import pytest

from prunelab.experiments import Store, load_plan
from prunelab.report.pages import import_committed, write_page
from prunelab.report.pages import sanity

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs/results/sanity_checks"
MASKS_HEADING = "### Masks at initialisation"
DATA = Path(os.environ.get("PRUNELAB_DATA") or ROOT.parent / "shared" / "data")


def _masks_section(text: str) -> list[str]:
    """The committed masks section as mask_structure returns it (from the blank line before its heading to the
    blank line before the page's closing "Runs:" line)."""
    lines = text.splitlines()
    start = lines.index(next(l for l in lines if l.startswith(MASKS_HEADING))) - 1
    end = next((i - 1 for i, l in enumerate(lines) if l.startswith("Runs: ")), len(lines))
    return lines[start:end]


def test_sanity_page_rebuilds_from_imported_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    committed = (COMMITTED / "tables.md").read_text()
    # the masks at init are recomputed from the data (test below); here they come from the committed file
    monkeypatch.setattr(sanity, "mask_structure", lambda spec: _masks_section(committed))
    store = Store(tmp_path / "store")
    done = import_committed("sanity", store)
    assert [w for _, w in done] == ["imported"] * 6
    # without the test subset (which the script applied outside its spec) the recipes hash to the run ids the
    # example script recorded in every row
    for rec, rows in ((sanity.MAIN, COMMITTED.glob("seed*.jsonl")), (sanity.EXTRA, COMMITTED.glob("extra/seed*.jsonl"))):
        recorded = {json.loads(line)["run_id"] for p in rows for line in p.read_text().splitlines()}
        assert recorded == {r.run_id for r in load_plan(rec, ["dataset.test_size=null"])}
        assert {r.spec.dataset.test_size for r in load_plan(rec)} == {5000}

    files, data = write_page("sanity", store, tmp_path / "page")
    assert data.coverage() == ("`sanity/vgg11_cifar10-page`: 3 of 3 runs done; "
                               "`sanity/vgg11_cifar10-page-extra`: 3 of 3 runs done")
    for sub in ("", "extra/"):
        page = tmp_path / "page" / sub
        assert (page / "tables.md").read_text() == (COMMITTED / sub / "tables.md").read_text()
        assert (page / "summary.csv").read_bytes() == (COMMITTED / sub / "summary.csv").read_bytes()
        assert (page / "sanity_checks.png").stat().st_size > 10_000

    # independent check: LR rewinding with weight shuffle at 90 %, mean ± std over the seed files
    accs = [100 * r["test_acc"] for p in sorted(COMMITTED.glob("seed*.jsonl"))
            for r in map(json.loads, p.read_text().splitlines())
            if r["variant"] == "lr_rewind/shuffle" and r["sparsity"] == 0.9]
    assert len(accs) == 3
    row = next(l for l in committed.splitlines() if l.startswith("| 90 % | LR rewinding |"))
    assert row.split(" | ")[5] == f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}" == "49.64 ± 1.07"


@pytest.mark.skipif(not (DATA / "cifar10").is_dir(), reason=f"no CIFAR-10 files under {DATA}")
def test_masks_at_init_match_the_committed_table():
    # ~10 s: SNIP and GraSP scores of seed 0's VGG11 at both sparsities, one thread
    spec = load_plan(sanity.MAIN, [f"dataset.root={DATA}"])[0].spec
    assert sanity.mask_structure(spec) == _masks_section((COMMITTED / "tables.md").read_text())


def _row(seed, method, sparsity, acc, data="none", ticket="none"):
    return {"seed": seed, "method": method, "sparsity": sparsity, "data_check": data, "ticket_check": ticket,
            "acc": 100 * acc}


def test_tables_show_whichever_checks_were_run(tmp_path):
    df = pd.DataFrame([_row(s, *r[:3], **r[3]) for s, off in ((0, 0.0), (1, 0.02)) for r in (
        ("dense", 0.0, 0.60 + off, {}), ("dense", 0.0, 0.10 + off, {"data": "half_data"}),
        ("snip", 0.9, 0.50 + off, {}), ("snip", 0.9, 0.48 + off, {"data": "half_data"}),
        ("snip", 0.9, 0.55, {"ticket": "reinit"}), ("synflow", 0.9, 0.40 + 2 * off, {}))])
    lines = sanity.tables(df)
    header = next(l for l in lines if l.startswith("| sparsity | method |"))
    assert header == "| sparsity | method | unchecked | half data | reinit | Δ half data | Δ reinit |"
    # unchecked 51 ± 1.41, half data 49 ± 1.41 -> Δ -2.00; reinit 55 -> Δ +4.00
    assert "| 90 % | SNIP | 51.00 ± 1.41 | 49.00 ± 1.41 | 55.00 ± 0.00 | -2.00 | +4.00 |" in lines
    synflow = next(l for l in lines if l.startswith("| 90 % | SynFlow |"))
    assert synflow.endswith("| – | – |")          # no checks ran for SynFlow: no made-up Δ
    assert "| half data | 11.00 ± 1.41 |" in lines  # dense run on the checked data, named readably
    assert not any("Per-seed paired differences" in l for l in lines)   # no random/hybrid tickets: no table
    assert sanity.plot(df, tmp_path / "p.png").stat().st_size > 0
