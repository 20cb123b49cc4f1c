"""Procedures: every method of the papers as one registered config with ``run(ctx)`` (see :mod:`.base`).

Importing this package registers every kind; ``PROCEDURES`` maps kind -> config class.
"""
from .base import (PROCEDURES, Procedure, ProcedureResult, ResultRow, RunContext, get_procedure, list_procedures,
                   register_procedure, run_procedure)
from .controls import CONTROLS, register_control
from .imp import REWINDS, IMPConfig, OneShotConfig, run_imp, run_oneshot
from .continuous import ContinuousConfig
from .dsd import DSDConfig
from .gradual import GMPConfig
from .l0_training import L0Config
from .slimming import SlimmingConfig
from .sanity import SanityConfig
from .stability import StabilityConfig
from .supermask import CriterionSupermaskConfig, LearnedSupermaskConfig
from .tickets import best_ticket, highest_sparsity_within, sparsest_matching

__all__ = ["CONTROLS", "PROCEDURES", "REWINDS", "ContinuousConfig", "CriterionSupermaskConfig", "DSDConfig",
           "GMPConfig", "IMPConfig", "L0Config", "LearnedSupermaskConfig", "OneShotConfig", "Procedure",
           "ProcedureResult", "ResultRow", "RunContext", "SanityConfig", "SlimmingConfig", "StabilityConfig",
           "best_ticket", "get_procedure", "highest_sparsity_within", "list_procedures", "register_control",
           "register_procedure", "run_imp", "run_oneshot", "run_procedure", "sparsest_matching"]
