"""Shared helpers of the experiments and CLI tests (this module holds no tests).

Every run uses MNIST-1D cut to 300 training signals and an MLP of LeNet-300-100's shape (~43K weights):
a round trains in well under a second. The generated data set is cached once per test session.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "model": {"name": "lenet300_100"},
    "dataset": {"name": "mnist1d", "train_size": 300, "val_size": 100},
    "train": {"optimizer": "adam", "lr": 1e-2, "batch_size": 100, "epochs": 2},
    "procedure": {"kind": "imp", "rounds": 3, "rate": 0.5, "controls": ["random_mask"]},
    "threads": 1,
}


def tiny_raw(data_root, **top) -> dict:
    """The tiny spec as a dict, with its data root and top-level keys replaced by ``top``."""
    raw = copy.deepcopy(TINY)
    raw["dataset"]["root"] = str(data_root)
    raw.update(top)
    return raw


def session_data_root(tmp_path_factory) -> Path:
    """One data root for the whole session (MNIST-1D is generated there once, then read from cache)."""
    root = tmp_path_factory.getbasetemp() / "prunelab-data"
    root.mkdir(exist_ok=True)
    return root


def child_env(data_root) -> dict:
    env = dict(os.environ)
    env["PRUNELAB_DATA"] = str(data_root)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return session_data_root(tmp_path_factory)
