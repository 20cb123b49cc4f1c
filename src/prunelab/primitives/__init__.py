"""Primitives: masks, scopes, scores, allocation, selection, enforcement, weight actions."""
from .masks import random_mask_like
from . import criteria as _criteria  # registers the DLT mask criteria as scores
from . import init_scores as _init_scores  # registers snip, grasp, synflow
from . import filter_scores as _filter_scores  # registers l1, ebn, ebn_signed, activations
from .allocation import (LTH_RATES, check_sparsity, keep_global, keep_global_rate, keep_per_layer_rates,
                         keep_uniform, prune_count, resolve_rates)
from .enforce import MaskEnforcer
from .l0 import HardConcreteGates
from .masks import Mask
from .soft_mask import ContinuousSparsificationMask
from .scopes import PRESETS, layer_groups, output_layer_name, resolve_scope
from .scores import compute_scores, get_score, list_scores, register_score
from .selection import TIE_RULES, select_global, select_layerwise, topk_flat

__all__ = ["LTH_RATES", "Mask", "MaskEnforcer", "PRESETS", "TIE_RULES", "check_sparsity", "compute_scores",
           "get_score", "keep_global", "keep_global_rate", "keep_per_layer_rates", "keep_uniform",
           "layer_groups", "list_scores", "output_layer_name", "prune_count", "random_mask_like",
           "register_score", "resolve_rates", "resolve_scope", "select_global", "select_layerwise",
           "topk_flat"]
