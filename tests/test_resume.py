"""Resume anywhere: a run of every procedure kind, killed with SIGKILL in the middle of a training (not at
a stage boundary), then started again, ends with exactly the golden rows and masks of an uninterrupted run."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_golden import GOLDEN, same

TESTS = Path(__file__).parent

# one golden case per procedure kind, and after how many partial checkpoints the kill comes: past the
# first training where the run has several, so finished trainings are restored and one is continued
KILL_AFTER = {"imp_init_controls": 10, "oneshot_finetune": 10, "criterion_supermask": 4, "supermask": 4,
              "cs_rewind": 10, "gmp": 4, "l0": 4, "dsd": 10, "slimming": 10, "sanity": 10,
              "stability_restore": 4}

SCRIPT = r"""
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from kill_harness import arm
from prunelab.training import Checkpoints
from golden.cases import golden_rows, run_case

name, ckdir, out, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
arm(kill_after)   # SIGKILL at the first optimizer step after the chosen partial checkpoint
ck = Checkpoints(ckdir, every_iterations=2)
rows = golden_rows(run_case(name, ck))
with open(out, "w") as f:
    json.dump({{"rows": rows, "resumed": ck.resumed}}, f)
"""


def _run(name, ckdir, out, kill_after):
    code = SCRIPT.format(tests=str(TESTS))
    return subprocess.run([sys.executable, "-c", code, name, str(ckdir), str(out), str(kill_after)],
                          capture_output=True, text=True, timeout=300)


def test_every_kind_has_a_kill_test():
    from golden.cases import CASES
    from prunelab.experiments.spec import PROCEDURE_KINDS
    assert sorted(CASES[n][1]["kind"] for n in KILL_AFTER) == sorted(PROCEDURE_KINDS)


@pytest.mark.parametrize("name", sorted(KILL_AFTER))
def test_killed_mid_training_resumes_with_identical_numbers(name, tmp_path):
    out = tmp_path / "rows.json"
    killed = _run(name, tmp_path / "ck", out, KILL_AFTER[name])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not out.exists()
    done = _run(name, tmp_path / "ck", out, 0)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(out.read_text())
    partial = [r for r in got["resumed"] if r[1] == "partial"]
    assert len(partial) == 1 and partial[0][2] > 0, got["resumed"]   # continued inside a training
    same(got["rows"], GOLDEN[name], name)
