from .checkpoint import Checkpoints
from .config import TrainConfig
from .loop import MaskSchedule, TrainResult, build_optimizer, evaluate, evaluate_splits, resolve_device, train
from .state import load_state, restore, save_state, snapshot

__all__ = ["Checkpoints", "MaskSchedule", "TrainConfig", "TrainResult", "build_optimizer", "evaluate",
           "evaluate_splits", "resolve_device", "train", "load_state", "restore", "save_state", "snapshot"]
