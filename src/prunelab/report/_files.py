"""Atomic writes for report files."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path`` and os.replace it into place.

    Unlike tempfile.mkstemp (mode 0600), the file is created with 0666 minus the umask: a report is meant
    to be read by others, e.g. served by a web server or opened from a shared results directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
