"""A hook for the preemption tests that kills its own training run at a chosen moment.

``RESNEST_TEST_DIE=<how>:<iteration>`` (1-based iteration), read when the hook is built:

- ``kill:N``: SIGKILL at the start of iteration N (after its batch is loaded);
- ``term:N``: SIGTERM at the start of iteration N (the run should finish N and save it);
- ``usr1-group:N``: SIGUSR1 to the whole process group (data workers too), as SLURM sends it;
- ``save:N``: die in the middle of writing the checkpoint of iteration N: the file size limit
  is set to half the previous checkpoint, so the kernel kills the process (SIGXFSZ) when the
  write reaches it, as a kill or a full disk during a save would leave it.

``RESNEST_TEST_DIE_RANK`` (default: every rank) limits it to one process.
"""

import os
import resource
import signal

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PreemptTestDieHook(Hook):
    priority = 'HIGHEST'

    def __init__(self) -> None:
        how, _, at = (os.environ.get('RESNEST_TEST_DIE') or ':0').partition(':')
        self.how, self.at = how, int(at)
        rank = os.environ.get('RESNEST_TEST_DIE_RANK')
        self.rank = None if rank is None else int(rank)

    def _mine(self, runner, iteration: int) -> bool:
        return (iteration == self.at and self.how != ''
                and (self.rank is None or self.rank == get_rank()))

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if not self._mine(runner, runner.iter + 1):
            return
        if self.how == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.how == 'term':
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.how == 'usr1-group':
            os.killpg(os.getpgid(0), signal.SIGUSR1)

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        if self.how != 'save' or not self._mine(runner, checkpoint['meta']['iter']):
            return
        sizes = [f.stat().st_size for f in os.scandir(runner.work_dir)
                 if f.name.endswith('.pth')]
        limit = max(sizes) // 2
        assert limit > 0, sizes
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel kills
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
