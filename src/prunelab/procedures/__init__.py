from .imp import CONTROLS, REWINDS, IMPConfig, IMPResult, RoundResult, run_imp, run_oneshot

__all__ = ["CONTROLS", "REWINDS", "IMPConfig", "IMPResult", "RoundResult", "run_imp", "run_oneshot"]
from .continuous import ContinuousConfig, run_continuous
from .dsd import DSDConfig, run_dsd
from .gradual import GMPConfig, run_gmp
from .l0_training import L0Config, run_l0
from .slimming import SlimmingConfig, run_slimming
from .sanity import SanityConfig, run_sanity
from .tickets import best_ticket, highest_sparsity_within, sparsest_matching
from .stability import StabilityConfig, run_stability
