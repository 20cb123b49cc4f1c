"""Golden numbers: every procedure kind's tiny configuration gives the rows and masks recorded in
tests/golden/golden.json (recorded before the procedure contract; see tests/golden/cases.py)."""
import json
import math
from pathlib import Path

import pytest

from golden.cases import CASES, golden_rows, run_case

GOLDEN = json.loads((Path(__file__).parent / "golden" / "golden.json").read_text())


def same(a, b, path="row"):
    """Equal structure, strings, ints and hashes; floats equal to 1e-9 relative (identical on one machine,
    a last-bit difference tolerated across CPUs)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{path}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_every_kind_has_a_golden_case():
    from prunelab.experiments.spec import PROCEDURE_KINDS
    assert {c[1]["kind"] for c in CASES.values()} == set(PROCEDURE_KINDS)
    assert set(GOLDEN) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_and_masks_equal_the_recorded_ones(name):
    same(golden_rows(run_case(name)), GOLDEN[name], name)
