from .config import TrainConfig
from .loop import TrainResult, build_optimizer, evaluate, resolve_device, train
from .state import load_state, restore, save_state, snapshot

__all__ = ["TrainConfig", "TrainResult", "build_optimizer", "evaluate", "resolve_device", "train",
           "load_state", "restore", "save_state", "snapshot"]
