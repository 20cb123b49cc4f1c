"""Experiments: typed specs, the result store, cached and resumable runs, sweeps, executors.

>>> runs = load_plan("recipes/lth/lenet_mnist-small.yaml", ["train.iterations=200"])
>>> df = run_experiment(runs, "prunelab-results")          # one row per (run, variant, round)
"""
from .executors import LocalExecutor, ProcessExecutor, RayExecutor, make_executor
from .plan import PlannedRun, expand, load_plan, make_label, parse_overrides
from .recipes import find_recipe, list_recipes, recipe_dirs
from .runner import (RESULT_COLUMNS, RunFailedError, RunOutcome, default_results_root, execute_run,
                     results_frame, run_experiment, run_plan)
from .spec import PROCEDURE_KINDS, DatasetSpec, ExperimentSpec, IMPProcedure, ModelSpec, OneShotProcedure
from .store import SCHEMA_VERSION, Store, StoreError

__all__ = ["DatasetSpec", "ExperimentSpec", "IMPProcedure", "LocalExecutor", "ModelSpec", "OneShotProcedure",
           "PROCEDURE_KINDS", "PlannedRun", "ProcessExecutor", "RESULT_COLUMNS", "RayExecutor", "RunFailedError",
           "RunOutcome", "SCHEMA_VERSION", "Store", "StoreError", "default_results_root", "execute_run", "expand",
           "find_recipe", "list_recipes", "load_plan", "make_executor", "make_label", "parse_overrides",
           "recipe_dirs", "results_frame", "run_experiment", "run_plan"]
