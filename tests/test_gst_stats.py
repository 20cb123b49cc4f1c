"""GST statistics: correlations, per-config CIs, Welch t-tests, the stability scatter plot."""
import math

import numpy as np
import pandas as pd
import pytest

from prunelab.analysis import config_summary, correlate, pairwise_welch, welch
from prunelab.report import plot_stability


def _kendall_no_ties(x, y):
    n, s = len(x), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return s / (n * (n - 1) / 2)


def test_correlate_matches_hand_formulas():
    x = np.array([99.1, 98.7, 99.8, 97.9, 98.2, 99.5, 98.0])
    y = np.array([0.801, 0.812, 0.795, 0.826, 0.815, 0.799, 0.821])
    out = correlate(x, y)
    xc, yc = x - x.mean(), y - y.mean()
    assert out["pearson_r"] == pytest.approx((xc @ yc) / math.sqrt((xc @ xc) * (yc @ yc)))
    assert out["kendall_tau"] == pytest.approx(_kendall_no_ties(x, y))
    assert 0 <= out["pearson_p"] < 0.01 and out["n"] == 7
    assert math.isnan(correlate([1, 1, 1], [1, 2, 3])["pearson_r"])  # no variation: no correlation
    assert correlate([1, np.nan, 2, 3], [2, 5, 4, 6])["n"] == 3


def test_welch_matches_formula():
    a, b = np.array([0.80, 0.82, 0.81, 0.83, 0.79]), np.array([0.84, 0.86, 0.85, 0.88])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    assert welch(a, b)["t"] == pytest.approx((a.mean() - b.mean()) / math.sqrt(va + vb))
    assert math.isnan(welch([1.0], b)["p"])


def test_config_summary_and_pairwise():
    df = pd.DataFrame({"config": ["S"] * 3 + ["L"] * 3, "acc": [0.8, 0.82, 0.81, 0.85, 0.86, 0.84]})
    s = config_summary(df, ["acc"])
    row = s[s.config == "S"].iloc[0]
    assert row["acc_mean"] == pytest.approx(0.81) and row["n"] == 3
    # t_{0.975, 2} = 4.302652729911275
    assert row["acc_ci95"] == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3))
    pw = pairwise_welch(df, "acc", [("S", "L")])
    assert pw.iloc[0]["mean_b"] == pytest.approx(0.85) and pw.iloc[0]["p"] < 0.05


def test_plot_stability_writes_files(tmp_path):
    df = pd.DataFrame({"config": ["S", "S", "L", "L"], "mean_stability": [99.5, 99.3, 97.0, 96.5],
                       "best_test_acc": [0.80, 0.81, 0.83, 0.84]})
    png, svg = plot_stability(df, tmp_path / "fig")
    assert png.stat().st_size > 1000 and svg.exists()
