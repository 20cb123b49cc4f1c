"""Where a run came from (versions, host, git commit) and whether its stored artifacts are intact."""
from __future__ import annotations

import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..io import sha256_file
from .store import Store


@lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The commit of the prunelab source tree when it is a git checkout (editable installs), else None."""
    src = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "."],
                               capture_output=True, text=True, timeout=10)
        return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    import torch

    from .. import __version__
    return {"prunelab": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "host": socket.gethostname(), "git_commit": git_commit()}


def artifacts_intact(store: Store, run_id: str) -> tuple[bool, str]:
    """Whether every artifact recorded for ``run_id`` exists and matches its sha256; else why not."""
    arts = store.artifacts(run_id)
    if not arts:
        return False, "no artifacts recorded"
    for a in arts:
        p = a["abspath"]
        if not p.is_file():
            return False, f"artifact {a['kind']} ({a['path']}) is missing"
        if sha256_file(p) != a["sha256"]:
            return False, f"artifact {a['kind']} ({a['path']}) fails its sha256 check"
    return True, ""
