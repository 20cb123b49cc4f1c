"""Reports: seed statistics against hand computations, tables, files, and the page in headless Chromium."""
from __future__ import annotations

import html
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunelab.errors import ConfigError
from prunelab.report import (plot_accuracy_vs_remaining, round_table, summarize, table_html, table_markdown,
                             write_report)

CHROMIUM = os.environ.get("PRUNELAB_CHROMIUM", "/usr/bin/chromium")
LABELS, VARIANTS, ROUNDS, SEEDS = ("rewind=init", "rewind=lr"), ("ticket", "reinit"), 4, (0, 1, 2)


def synthetic(labels=LABELS, variants=VARIANTS, rounds=ROUNDS, seeds=SEEDS) -> pd.DataFrame:
    """The experiments layer's shape: one row per (run, variant, round); controls degrade faster."""
    rows = []
    for li, label in enumerate(labels):
        for vi, variant in enumerate(variants):
            for seed in seeds:
                for r in range(rounds):
                    acc = 0.97 - (0.005 if vi == 0 else 0.02) * r - 0.002 * li + 0.003 * (seed - 1) * (r % 2 * 2 - 1)
                    rows.append(dict(
                        run_id=f"{label}-s{seed}", name="lth", label=label, model="lenet300_100",
                        dataset="mnist", seed=seed, procedure="imp", variant=variant, round=r,
                        kept=round(266200 * 0.8 ** r), total=266200, remaining_pct=100 * 0.8 ** r,
                        test_acc=acc, test_loss=0.1, val_acc=acc, val_loss=0.1,
                        early_stop_iteration=1000 + 100 * r, early_stop_test_acc=acc + 0.001))
    return pd.DataFrame(rows)


# --- statistics --------------------------------------------------------------------------------------

def t975(dof: int) -> float:
    # Closed forms of Student's t quantile: dof 1 is Cauchy, dof 2 is t = (2p-1) sqrt(2 / (4p(1-p))).
    p = 0.975
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    raise ValueError(dof)


def test_t_closed_forms_match_published_table():
    assert t975(1) == pytest.approx(12.706, abs=5e-4)
    assert t975(2) == pytest.approx(4.303, abs=5e-4)


def test_summarize_matches_hand_computation():
    df = pd.DataFrame({
        "label": ["a", "a", "a", "a", "a", "b"],
        "variant": ["ticket"] * 6,
        "round": [1, 1, 1, 0, 0, 0],
        "seed": [0, 1, 2, 0, 1, 0],
        "kept": [50, 50, 50, 100, 100, 100],
        "total": [100] * 6,
        "test_acc": [0.90, 0.92, 0.97, 0.80, 0.84, 0.5],
        "early_stop_test_acc": [0.91, np.nan, 0.95, np.nan, np.nan, np.nan],
    })
    s = summarize(df).set_index(["label", "variant", "round"])
    assert list(s.index) == [("a", "ticket", 0), ("a", "ticket", 1), ("b", "ticket", 0)]

    three = s.loc[("a", "ticket", 1)]
    # mean 0.93; deviations -0.03, -0.01, 0.04 -> s^2 = 0.0026 / 2
    std = math.sqrt(0.0026 / 2)
    assert three["remaining_pct"] == pytest.approx(50.0)  # derived from kept / total
    assert three["n_seeds"] == 3 and three["test_acc_n"] == 3
    assert three["test_acc_mean"] == pytest.approx(0.93)
    assert three["test_acc_std"] == pytest.approx(std)
    assert three["test_acc_ci95"] == pytest.approx(t975(2) * std / math.sqrt(3), rel=1e-9)
    # early-stop: two of three seeds have a value, so n = 2 and dof = 1; |0.95 - 0.91| / sqrt(2) = s
    assert three["early_stop_test_acc_n"] == 2
    assert three["early_stop_test_acc_ci95"] == pytest.approx(t975(1) * (0.04 / math.sqrt(2)) / math.sqrt(2))

    two = s.loc[("a", "ticket", 0)]
    assert two["test_acc_ci95"] == pytest.approx(t975(1) * (0.04 / math.sqrt(2)) / math.sqrt(2))
    assert two["early_stop_test_acc_n"] == 0 and math.isnan(two["early_stop_test_acc_mean"])

    one = s.loc[("b", "ticket", 0)]
    assert one["test_acc_mean"] == 0.5 and math.isnan(one["test_acc_std"]) and math.isnan(one["test_acc_ci95"])


def test_summarize_falls_back_to_name_and_rejects_bad_input():
    df = synthetic(labels=("x",), variants=("ticket",), rounds=2, seeds=(0, 1)).drop(columns=["label"])
    assert set(summarize(df)["label"]) == {"lth"}

    with pytest.raises(ConfigError, match=r"seed 0 appears 2 times.*run_ids"):
        summarize(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['variant'\]"):
        summarize(df.drop(columns=["variant"]))
    with pytest.raises(ConfigError, match="remaining_pct, or kept and total"):
        summarize(df.drop(columns=["remaining_pct", "kept"]))
    with pytest.raises(ConfigError, match="no rows"):
        summarize(df.iloc[:0])


# --- tables and plots --------------------------------------------------------------------------------

def test_round_table_orders_by_round_and_formats_mean_ci():
    df = synthetic()
    df.loc[df["label"] == "rewind=lr", "label"] = "<b>lr</b> | x"  # must be escaped in HTML and Markdown
    s = summarize(df)
    t = round_table(s)
    assert len(t) == len(LABELS) * len(VARIANTS) * ROUNDS
    assert list(t["Round"]) == sorted(t["Round"])
    assert list(t["Variant"][:4]) == ["ticket", "reinit", "ticket", "reinit"]  # order of first appearance
    first = s.iloc[0]
    assert t.iloc[0]["Test acc. (%)"] == f"{100 * first.test_acc_mean:.2f} ± {100 * first.test_acc_ci95:.2f}"

    md = table_markdown(t).splitlines()
    assert len(md) == 2 + len(t) and md[1].startswith("|---:|---:|---|")
    assert "&lt;b&gt;lr&lt;/b&gt; | x" in table_html(t) and "<b>lr" not in table_html(t)
    assert "| <b>lr</b> \\| x |" in "\n".join(md)  # a pipe in a cell must not split it
    assert table_html(t).count("<tbody>") == ROUNDS


def test_plot_writes_png_and_svg(tmp_path):
    png, svg = plot_accuracy_vs_remaining(synthetic(), tmp_path / "fig.png")
    assert (png.name, svg.name) == ("fig.png", "fig.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:2000]
    with pytest.raises(ConfigError, match="'val_loss_x'"):
        plot_accuracy_vs_remaining(synthetic(), tmp_path / "bad", metric="val_loss_x")


# --- the HTML report in headless Chromium ----------------------------------------------------------

def chromium(tmp_path: Path, url: str, *mode: str) -> subprocess.CompletedProcess:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"headless Chromium not found at {CHROMIUM}; the HTML report test needs Debian's chromium "
                    "package: `sudo apt-get update && sudo apt-get install -y chromium` (CI installs it in "
                    ".ci/run), or set PRUNELAB_CHROMIUM to a Chromium binary")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
           "--window-size=1200,1600", *mode, url]
    env = {**os.environ, "HOME": str(tmp_path)}  # keep Chromium's dot-directories out of the real home
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def root_attrs(dom: str) -> dict[str, str]:
    tag = re.search(r"<html\b[^>]*>", dom).group(0)
    return {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', tag)}


def test_html_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    df = synthetic()
    out = tmp_path / "report"
    index = write_report(df, out, title="LTH rewinding <test>")
    assert index == out / "index.html"
    for name in ("index.html", "accuracy.png", "accuracy.svg", "early_stop_accuracy.png",
                 "early_stop_accuracy.svg", "summary.csv", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*.tmp"))
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 16 and summary["n_seeds"].eq(3).all()
    page = index.read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network

    dom = chromium(tmp_path, index.as_uri(), "--dump-dom").stdout
    attrs = root_attrs(dom)
    assert "data-error" not in attrs, attrs["data-error"]
    assert attrs.get("data-images-loaded") == "yes", attrs
    assert "<title>LTH rewinding &lt;test&gt;</title>" in dom
    assert re.search(r'<img src="accuracy\.png"[^>]*data-region="plot"', dom)
    assert 'href="accuracy.svg"' in dom
    body = dom[dom.index('<table class="results"'):dom.index("</table>")]
    assert body.count("<tr>") == 1 + 16  # header + one row per (label, variant, round)
    last = summarize(df).iloc[-1]  # rewind=lr, reinit, round 3
    assert (f"<td>rewind=lr</td><td>reinit</td><td class=\"num\">3</td><td class=\"num\">"
            f"{100 * last.test_acc_mean:.2f} ± {100 * last.test_acc_ci95:.2f}</td>") in body

    shot_path = tmp_path / "shot.png"
    chromium(tmp_path, index.as_uri(), f"--screenshot={shot_path}")
    shot = np.asarray(Image.open(shot_path).convert("RGB")).astype(int)
    assert shot.shape == (1600, 1200, 3)
    layout = json.loads(attrs["data-layout"])

    def region(name):
        x, y, w, h = (round(v) for v in layout[name])
        assert w > 200 and h > 150 and y + h <= shot.shape[0], f"{name} is not fully on screen: {layout}"
        return shot[y + 2:y + h - 2, x + 2:x + w - 2]

    plot = region("plot")
    colours = {tuple(p) for p in plot.reshape(-1, 3)[::3]}
    assert len(colours) > 100, f"plot region looks blank: {len(colours)} colours"
    # The lines are drawn in matplotlib's C0 blue and C1 orange (one colour per label).
    for rgb in ((31, 119, 180), (255, 127, 14)):
        near = np.abs(plot - np.array(rgb)).sum(axis=2) < 40
        assert near.sum() > 200, f"no line in colour {rgb} in the plot region"

    table = region("table")
    dark = (table.sum(axis=2) < 300).mean()  # text pixels
    assert 0.01 < dark < 0.5, f"table region has {dark:.1%} text pixels"
    # one line of text per table row: count the runs of scanlines that contain text
    rows_with_text = (table.sum(axis=2) < 300).any(axis=1)
    bands = int(np.sum(rows_with_text[1:] & ~rows_with_text[:-1])) + int(rows_with_text[0])
    assert bands >= 17, f"expected a text line per table row (17), found {bands}"


def test_missing_plot_is_reported_by_the_page(tmp_path):
    index = write_report(synthetic(rounds=2, seeds=(0, 1)), tmp_path / "r")
    (tmp_path / "r" / "accuracy.png").unlink()
    attrs = root_attrs(chromium(tmp_path, index.as_uri(), "--dump-dom").stdout)
    assert attrs.get("data-images-loaded") == "no"
    assert "accuracy.png" in attrs.get("data-error", "")
