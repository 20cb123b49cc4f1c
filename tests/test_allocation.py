"""Remaining-weight bookkeeping of IMP against spec §1.2 (Frankle & Carbin's per-layer rates)."""
import pytest
import torch

from prunelab import ConfigError, Mask
from prunelab.models import build_model
from prunelab.primitives import keep_per_layer_rates, prune_count, resolve_rates

# spec §1.2: remaining % after round r under the official-code rounding rule
TABLE_ROUNDS = [1, 3, 5, 7, 9, 10, 11, 12, 15, 18, 20, 24]
TABLE = {
    "lenet300_100": [80.04, 51.28, 32.87, 21.08, 13.52, 10.83, 8.68, 6.96, 3.59, 1.86, 1.20, 0.50],
    "conv2": [80.10, 51.41, 33.02, 21.23, 13.66, 10.97, 8.81, 7.08, 3.68, 1.93, 1.26, 0.54],
    "conv4": [81.08, 53.55, 35.61, 23.88, 16.16, 13.35, 11.06, 9.18, 5.37, 3.23, 2.34, 1.29],
    "conv6": [82.54, 56.39, 38.67, 26.61, 18.38, 15.30, 12.74, 10.62, 6.18, 3.62, 2.55, 1.27],
}
SHAPES = {"lenet300_100": (1, 28, 28)}


def _masks_over_rounds(name, rounding, rounds=24):
    model = build_model(name, num_classes=10, input_shape=SHAPES.get(name, (3, 32, 32)))
    mask = Mask.ones(model)
    rates = resolve_rates(model, mask, name)  # the preset named after the model
    counts = {n: mask.total(n) for n in mask}
    out = {}
    for r in range(1, rounds + 1):
        keep = keep_per_layer_rates(Mask({n: torch.ones(1, dtype=torch.bool).expand(c) for n, c in
                                          counts.items()}, {n: (c,) for n, c in counts.items()}),
                                    rates, rounding)
        counts = keep
        out[r] = 100.0 * sum(counts.values()) / mask.total()
    return out


@pytest.mark.parametrize("name", list(TABLE))
def test_official_rounding_matches_spec_table(name):
    got = _masks_over_rounds(name, "official")
    for r, expected in zip(TABLE_ROUNDS, TABLE[name]):
        assert round(got[r], 2) == pytest.approx(expected, abs=1e-9), (name, r, got[r])


def test_plain_rounding_differs_where_spec_says():
    lenet = _masks_over_rounds("lenet300_100", "plain")
    assert [round(lenet[r], 2) for r in (7, 12, 18)] == [21.07, 6.95, 1.85]
    assert round(_masks_over_rounds("conv6", "plain")[20], 2) == 2.54


def test_prune_count_rules():
    assert prune_count(235200, 0.2, "plain") == 47040
    assert prune_count(235200, 0.2, "official") == 47039  # 19.999999999999996 %
    assert prune_count(7, 0.5, "plain") == 3
    with pytest.raises(ConfigError, match="rounding 'ceil'"):
        prune_count(10, 0.2, "ceil")


def test_rates_errors():
    model = build_model("lenet300_100", num_classes=10, input_shape=(1, 28, 28))
    mask = Mask.ones(model)
    with pytest.raises(ConfigError, match="fc1.weight"):
        resolve_rates(model, mask, {"conv": 0.1})
    with pytest.raises(ConfigError, match="rate preset 'lenet'"):
        resolve_rates(model, mask, "lenet")
    with pytest.raises(ConfigError, match=r"1\.2"):
        resolve_rates(model, mask, 1.2)
