"""prunelab: pruning and lottery-ticket research for PyTorch."""
from .errors import (ChecksumError, ConfigError, DataNotFoundError, PrunelabError, TrainingDivergedError,
                     UnknownNameError)
from .primitives import Mask, MaskEnforcer, resolve_scope
from .procedures import IMPConfig, ProcedureResult, run_imp, run_oneshot, run_procedure
from .export import export_pruned
from .pruning import prune
from .training import TrainConfig, evaluate, train

__version__ = "0.1.0"


def __getattr__(name):  # models and data import lazily: heavy registries, optional extras
    if name in ("build_model", "list_models", "register_model"):
        from . import models
        return getattr(models, name)
    if name in ("load_dataset", "list_datasets"):
        from . import data
        return getattr(data, name)
    raise AttributeError(f"module 'prunelab' has no attribute {name!r}")


__all__ = ["ChecksumError", "ConfigError", "DataNotFoundError", "IMPConfig", "Mask",
           "MaskEnforcer", "PrunelabError", "TrainConfig", "TrainingDivergedError", "UnknownNameError",
           "ProcedureResult", "build_model", "evaluate", "export_pruned", "list_datasets", "list_models",
           "load_dataset", "prune",
           "register_model", "resolve_scope", "run_imp", "run_oneshot", "run_procedure", "train", "__version__"]
