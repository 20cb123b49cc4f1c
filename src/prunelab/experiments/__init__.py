"""Experiments: typed specs, the result store, cached and resumable runs, sweeps, executors.

>>> runs = load_plan("recipes/lth/lenet_mnist-small.yaml", ["train.iterations=200"])
>>> df = run_experiment(runs, "prunelab-results")          # one row per (run, variant, round)
"""
from .execute import RunFailedError, RunOutcome, execute_run
from .executors import LocalExecutor, ProcessExecutor, RayExecutor, make_executor
from .orchestrate import default_results_root, run_experiment, run_plan
from .plan import PlannedRun, expand, load_plan, make_label, parse_overrides
from .recipes import find_recipe, list_recipes, recipe_dirs
from .results import RESULT_COLUMNS, results_frame
from .spec import PROCEDURE_KINDS, DatasetSpec, ExperimentSpec, ModelSpec
from .store import SCHEMA_VERSION, Store, StoreError

__all__ = ["DatasetSpec", "ExperimentSpec", "LocalExecutor", "ModelSpec",
           "PROCEDURE_KINDS", "PlannedRun", "ProcessExecutor", "RESULT_COLUMNS", "RayExecutor", "RunFailedError",
           "RunOutcome", "SCHEMA_VERSION", "Store", "StoreError", "default_results_root", "execute_run", "expand",
           "find_recipe", "list_recipes", "load_plan", "make_executor", "make_label", "parse_overrides",
           "recipe_dirs", "results_frame", "run_experiment", "run_plan"]
