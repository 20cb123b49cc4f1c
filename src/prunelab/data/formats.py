"""Readers for the official on-disk formats: IDX (MNIST, Fashion-MNIST) and the CIFAR binary records.

Everything is decoded with ``np.frombuffer`` / ``np.fromfile`` and reshapes, so reading 50,000 images is a
couple of memory copies rather than a Python loop over samples.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from prunelab.errors import PrunelabError

__all__ = ["DataFormatError", "read_idx", "read_cifar_bin", "CIFAR_IMAGE_BYTES"]

GZIP_MAGIC = b"\x1f\x8b"
CIFAR_IMAGE_BYTES = 3 * 32 * 32

# IDX type codes (third byte of the magic number), all stored big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataFormatError(PrunelabError, ValueError):
    """A data file exists but its contents do not follow the expected format."""


def _read_bytes(path: Path) -> bytes:
    """Whole file, transparently gunzipped; detection is by magic bytes so a mis-named file still reads."""
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head == GZIP_MAGIC:
            try:
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            except (OSError, EOFError) as exc:
                raise DataFormatError(f"{path}: corrupt gzip stream ({exc})") from exc
        return f.read()


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into an array of its declared shape and dtype.

    Multi-byte types are converted to native byte order so the result can go straight into torch.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFormatError(
            f"{path}: not an IDX file (magic {data[:4].hex() or 'empty'}; expected 0000 + type + ndim)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        allowed = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataFormatError(f"{path}: unknown IDX type code 0x{code:02X}; allowed: {allowed}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(
            f"{path}: IDX header declares shape {shape} of {dtype} ({expected} bytes in all) "
            f"but the file holds {len(data)} bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else arr


def read_cifar_bin(
    path: str | Path, *, label_bytes: int = 1, label_index: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR binary batch: records of ``label_bytes`` label bytes followed by 3,072 pixel bytes.

    Pixels are stored as a red, a green, then a blue 32x32 plane, which is exactly NCHW.
    ``label_index`` picks which label byte to return: CIFAR-10 has one; CIFAR-100 has coarse (0) then
    fine (1), and the default -1 takes the fine label.
    Returns ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.
    """
    path = Path(path)
    record = label_bytes + CIFAR_IMAGE_BYTES
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DataFormatError(
            f"{path}: size {raw.size} bytes is not a positive multiple of the {record}-byte CIFAR record "
            f"({label_bytes} label byte(s) + {CIFAR_IMAGE_BYTES} pixels)"
        )
    if not -label_bytes <= label_index < label_bytes:
        raise DataFormatError(f"label_index {label_index} out of range for {label_bytes} label byte(s)")
    recs = raw.reshape(-1, record)
    labels = recs[:, label_index % label_bytes].astype(np.int64)
    images = np.ascontiguousarray(recs[:, label_bytes:]).reshape(-1, 3, 32, 32)
    return images, labels
