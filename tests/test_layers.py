"""Import layers (pyproject.toml [tool.importlinter]): no module imports a layer above its own.

Runs import-linter's ``lint-imports`` on the installed source tree; imports inside functions count too.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers():
    pytest.importorskip("importlinter", reason="needs import-linter (pip install -e '.[test]')")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "the lint-imports command of import-linter is not on PATH"
    proc = subprocess.run([exe, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"import layers broken (lint-imports exit {proc.returncode}):\n{report}"
    assert "0 broken" in report, report
