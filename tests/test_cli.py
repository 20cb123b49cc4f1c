"""The ``prunelab`` command line: run / status / results / report / list, exit codes, README examples."""
import re
import shlex
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from prunelab.cli import main
from prunelab.experiments import RESULT_COLUMNS

from test_experiments_helpers import REPO, child_env, data_root, tiny_raw  # noqa: F401  (fixture)


@pytest.fixture
def spec_file(tmp_path, data_root):
    raw = tiny_raw(data_root)
    raw["procedure"]["rounds"] = 2
    raw["sweep"] = {"axes": {"seed": [0, 1]}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_status_results_and_exports(spec_file, tmp_path, capsys):
    res = str(tmp_path / "results")
    assert main(["run", str(spec_file), "--results", res, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 computed, 0 cached, 0 failed" in out
    assert re.search(r"tiny\s+tiny\s+2\s+25\.00\s+2\s+\d+\.\d\d ± \d+\.\d\d", out), out   # round 2: 25 % left

    assert main(["run", str(spec_file), "--results", res, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("cache hit") == 2 and "0 computed, 2 cached, 0 failed" in out

    assert main(["run", str(spec_file), "--results", res, "--dry-run", "--set", "sweep.axes.seed=[1, 5]"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == ["cached", "compute"]
    # several specs in one command: every run of each, in order; a run that two specs name runs once
    assert main(["run", str(spec_file), str(spec_file), "--results", res, "--dry-run"]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()] == ["cached"] * 2

    assert main(["status", "--results", res]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r" done +3 ", out)) == 2 and "2 done" in out   # 3 ticket rounds stored (0-2)

    csv, pq = tmp_path / "r.csv", tmp_path / "r.parquet"
    assert main(["results", "--results", res, "--csv", str(csv), "--parquet", str(pq)]) == 0
    df = pd.read_csv(csv)
    assert list(df.columns) == RESULT_COLUMNS and len(df) == 2 * 5
    assert sorted(df.seed.unique()) == [0, 1] and set(df.variant) == {"ticket", "random_mask"}
    back = pd.read_parquet(pq)
    assert list(back.columns) == RESULT_COLUMNS
    pd.testing.assert_frame_equal(back, df, check_dtype=False)

    out_dir = tmp_path / "report"
    assert main(["report", "--results", res, "--out", str(out_dir)]) == 0
    assert (out_dir / "index.html").is_file() and "report:" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("train.lrr=0.1", "unknown key 'train.lrr'; allowed keys here: optimizer, lr"),
    ("train.lr=-1", "train.lr = -1 is outside the allowed range (0, inf)"),
    ("procedure.sparsity=1.5", "procedure.sparsity = 1.5 is outside the allowed range [0, 1)"),
])
def test_bad_input_exits_2_and_writes_nothing(spec_file, tmp_path, capsys, override, message):
    res = tmp_path / "results"
    assert main(["run", str(spec_file), "--results", str(res), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prunelab: error: invalid spec") and message in err
    assert not res.exists()


def test_other_bad_input_exits_2(tmp_path, capsys):
    assert main(["run", "lth/lenet_mnist-smal", "--results", str(tmp_path)]) == 2
    assert "Did you mean the recipe 'lth/lenet_mnist-small'?" in capsys.readouterr().err
    assert main(["status", "--results", str(tmp_path / "nothing")]) == 2
    assert "no results store" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    assert main(["run", str(bad)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:     # argparse's own usage errors are exit 2 as well
        main(["run"])
    assert e.value.code == 2


def test_a_failed_run_exits_1_and_shows_in_status(spec_file, tmp_path, capsys):
    res = str(tmp_path / "results")
    args = ["run", str(spec_file), "--results", res, "--quiet", "--set", "procedure.rate={output: 0.1}",
            "--set", "sweep.axes.seed=[0]"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "0 computed, 0 cached, 1 failed" in captured.out
    assert "no rate given for 'fc1.weight'" in captured.err
    logs = list((tmp_path / "results" / "runs").glob("*/error.log"))   # the whole traceback, next to the run
    assert len(logs) == 1 and str(logs[0]) in captured.err
    text = logs[0].read_text()
    assert text.startswith("Traceback (most recent call last):") and "no rate given for 'fc1.weight'" in text
    assert main(["status", "--results", res]) == 0
    assert "failed" in capsys.readouterr().out


def test_list(capsys):
    assert main(["list", "recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("lth/lenet_mnist ", "lth/lenet_mnist-small", "lth/conv6_cifar10-small", "quickstart"):
        assert name in out
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "imp, oneshot" in out and "magnitude" in out and "lenet300_100" in out
    assert main(["list", "models"]) == 0
    assert "conv2" in capsys.readouterr().out.split()


def test_the_console_entry_point_returns_exit_codes(tmp_path, data_root):
    bad = subprocess.run([sys.executable, "-m", "prunelab.cli", "run", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, env=child_env(data_root))
    assert bad.returncode == 2 and "neither a file nor a recipe name" in bad.stderr


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [line for b in blocks for line in b.splitlines() if line.startswith("prunelab ")]


def test_readme_command_line_examples_run_as_written(tmp_path, data_root, monkeypatch, capsys):
    commands = _readme_commands()
    assert any(c.startswith("prunelab run") for c in commands) and any("results" in c for c in commands)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNELAB_DATA", str(data_root))
    monkeypatch.delenv("PRUNELAB_RESULTS", raising=False)
    outputs = []
    for command in commands:
        argv = shlex.split(command, comments=True)[1:]
        assert main(argv) == 0, command
        outputs.append(capsys.readouterr().out)
    runs = [o for c, o in zip(commands, outputs) if c.startswith("prunelab run")]
    assert "2 computed" in runs[0] and "0 computed, 2 cached" in runs[1]
    assert "2 computed, 2 cached" in runs[2]                  # --jobs 2: seeds 2 and 3 are new
    assert (tmp_path / "results.csv").is_file()
    assert (tmp_path / "prunelab-results" / "report" / "index.html").is_file()
