"""Shared by the SIGKILL resume tests: counts partial checkpoints and kills the process at the first optimizer
step after the chosen one (run inside the subprocess the test starts)."""
import os
import signal

from torch.optim.optimizer import register_optimizer_step_post_hook

from prunelab.training import checkpoint as ck_mod


def arm(kill_after: int, stage=None) -> None:
    """SIGKILL once ``kill_after`` partial checkpoints were written (of stage ``stage`` only, when given);
    0 disarms."""
    saves = []
    real_save = ck_mod.Stage.save_partial

    def counting_save(self, state):
        real_save(self, state)
        saves.append(self.index)

    ck_mod.Stage.save_partial = counting_save
    if kill_after:
        def due():
            return (saves.count(stage) if stage is not None else len(saves)) >= kill_after
        register_optimizer_step_post_hook(lambda *a: os.kill(os.getpid(), signal.SIGKILL) if due() else None)
