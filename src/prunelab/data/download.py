"""Checksummed downloads and safe archive extraction.

A download is streamed into a temporary file next to its destination and renamed into place only after
its digest matched, so an interrupted or corrupted transfer never leaves a file that looks complete.
``urlopen`` is injectable (anything called as ``urlopen(url, timeout=...)`` returning a context manager
with ``read(n)``), and ``file://`` URLs work with the default opener, so all of this is testable offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from prunelab.errors import ChecksumError
from prunelab.data.formats import DataFormatError

__all__ = ["download_url", "extract_archive", "extract_tar", "extract_zip"]

_CHUNK = 1 << 20
# tarfile.FilterError only exists where extraction filters do (3.10.12+, 3.11.4+).
_FILTER_ERROR = getattr(tarfile, "FilterError", DataFormatError)


def _content_length(resp) -> int | None:
    headers = getattr(resp, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def download_url(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    urlopen: Callable | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest`` atomically, verifying md5 and/or sha256 when given.

    Raises ChecksumError (naming the file, expected and actual digests) and removes the partial file on
    any failure; network errors propagate as the opener raised them (``urllib.error.URLError``, OSError).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = urlopen if urlopen is not None else urllib.request.urlopen
    hashers = {}
    if md5:
        hashers["md5"] = (hashlib.md5(), md5.lower())
    if sha256:
        hashers["sha256"] = (hashlib.sha256(), sha256.lower())
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, opener(url, timeout=timeout) as resp:
            with tqdm(
                total=_content_length(resp), unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress, leave=False,
            ) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    for h, _ in hashers.values():
                        h.update(chunk)
                    bar.update(len(chunk))
        for algo, (h, expected) in hashers.items():
            got = h.hexdigest()
            if got != expected:
                raise ChecksumError(
                    f"checksum mismatch for {dest.name} downloaded from {url}: expected {algo} {expected}, "
                    f"got {got}; the download was discarded"
                )
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


def _check_members_fallback(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Pre-3.10.12 Pythons lack extraction filters: accept only plain files/dirs inside the target."""
    safe = []
    for m in tf.getmembers():
        norm = os.path.normpath(m.name)
        if os.path.isabs(m.name) or norm == ".." or norm.startswith(".." + os.sep) or not (m.isfile() or m.isdir()):
            raise DataFormatError(f"{archive}: refusing unsafe archive member {m.name!r}")
        safe.append(m)
    return safe


def extract_tar(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract a (possibly compressed) tar into ``dest`` without letting members escape it.

    Uses tarfile's ``"data"`` filter (rejects absolute paths, ``..``, links out of the tree, devices).
    Members are unpacked into a staging directory inside ``dest`` first and then renamed into place one
    by one, so a failure half-way never leaves a truncated file under its final name.
    Returns the extracted file paths.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(staging, filter="data")
                else:  # pragma: no cover - old Python only
                    tf.extractall(staging, members=_check_members_fallback(tf, archive))
        except _FILTER_ERROR as exc:
            raise DataFormatError(f"{archive}: refusing unsafe archive member: {exc}") from exc
        except tarfile.TarError as exc:
            raise DataFormatError(f"{archive}: not a readable tar archive ({exc})") from exc
        return _move_staged(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_staged(staging: Path, dest: Path) -> list[Path]:
    """Move every extracted file from ``staging`` to the same place under ``dest`` (files appear whole)."""
    out = []
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = dest / src.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
        out.append(target)
    return out


def _safe_zip_name(info: zipfile.ZipInfo, archive: Path) -> str | None:
    """The member's relative path if it is a plain file/dir that stays inside the target, else raise.

    Rejects what tarfile's ``"data"`` filter rejects: absolute names (also ``C:`` drives and ``\\``
    separators), any ``..`` component, and symlinks (Unix mode bits in ``external_attr``).
    Returns None for directory entries (directories are created from the file paths).
    """
    name = info.filename.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver stored no Unix file type
    if (
        name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts or not parts
        or kind not in (0, stat.S_IFREG, stat.S_IFDIR)  # symlinks, devices, fifos
    ):
        raise DataFormatError(f"{archive}: refusing unsafe archive member {info.filename!r}")
    return None if info.is_dir() else "/".join(parts)


def extract_zip(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract a zip into ``dest`` with the same guarantees as :func:`extract_tar`.

    Every member name is checked before anything is written (absolute paths, ``..``, links: DataFormatError
    naming the member, and ``dest`` is left as it was); members are streamed into a staging directory
    inside ``dest`` and renamed into place one by one. Returns the extracted file paths.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataFormatError(f"{archive}: not a readable zip archive ({exc})") from exc
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        with zf:
            members = [(info, _safe_zip_name(info, archive)) for info in zf.infolist()]
            try:
                for info, rel in members:
                    if rel is None:
                        continue
                    target = staging / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:  # CRC mismatch, truncation
                raise DataFormatError(f"{archive}: damaged zip archive ({exc})") from exc
        return _move_staged(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_archive(archive: str | Path, dest: str | Path) -> list[Path]:
    """:func:`extract_zip` for ``.zip`` files, :func:`extract_tar` for anything else."""
    return (extract_zip if Path(archive).suffix.lower() == ".zip" else extract_tar)(archive, dest)
