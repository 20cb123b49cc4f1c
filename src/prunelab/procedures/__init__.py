from .imp import CONTROLS, REWINDS, IMPConfig, IMPResult, RoundResult, run_imp, run_oneshot

__all__ = ["CONTROLS", "REWINDS", "IMPConfig", "IMPResult", "RoundResult", "run_imp", "run_oneshot"]
