"""The sanity-check report (examples/sanity_checks.py --report) shows whichever checks were run, with their Δ."""
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sanity_checks.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("sanity_checks_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(seed, method, sparsity, acc, data="none", ticket="none"):
    return {"seed": seed, "method": method, "sparsity": sparsity, "data_check": data, "ticket_check": ticket,
            "test_acc": acc, "variant": method}


def test_report_columns_follow_the_checks_that_were_run(tmp_path):
    rows = {0: [_row(0, "dense", 0.0, 0.60), _row(0, "dense", 0.0, 0.10, data="half_data"),
                _row(0, "snip", 0.9, 0.50), _row(0, "snip", 0.9, 0.48, data="half_data"),
                _row(0, "snip", 0.9, 0.55, ticket="reinit"), _row(0, "synflow", 0.9, 0.40)],
            1: [_row(1, "dense", 0.0, 0.62), _row(1, "dense", 0.0, 0.12, data="half_data"),
                _row(1, "snip", 0.9, 0.52), _row(1, "snip", 0.9, 0.50, data="half_data"),
                _row(1, "snip", 0.9, 0.55, ticket="reinit"), _row(1, "synflow", 0.9, 0.44)]}
    for seed, rs in rows.items():
        (tmp_path / f"seed{seed}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))
    mod = _load_example()
    mod.report(SimpleNamespace(out=str(tmp_path), data=str(tmp_path / "no-data"), recipe=mod.RECIPE, set=None))
    text = (tmp_path / "tables.md").read_text()
    lines = text.splitlines()
    header = next(l for l in lines if l.startswith("| sparsity | method |"))
    assert header == ("| sparsity | method | unchecked | half data | reinit | Δ half data | Δ reinit |")
    snip = next(l for l in lines if l.startswith("| 90 % | SNIP |"))
    # unchecked 51 ± 1.41, half data 49 ± 1.41 -> Δ -2.00; reinit 55 -> Δ +4.00
    assert snip == "| 90 % | SNIP | 51.00 ± 1.41 | 49.00 ± 1.41 | 55.00 ± 0.00 | -2.00 | +4.00 |"
    synflow = next(l for l in lines if l.startswith("| 90 % | SynFlow |"))
    assert synflow.endswith("| – | – |")          # no checks ran for SynFlow: no made-up Δ
    assert "| half data | 11.00 ± 1.41 |" in text  # dense run on the checked data, named readably
    assert "Per-seed paired differences" not in text  # no random/hybrid tickets: no empty table
    assert (tmp_path / "sanity_checks.png").stat().st_size > 0
