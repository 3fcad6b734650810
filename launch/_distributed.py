"""The launchers' multi-process flags: one definition for train.py and evaluate.py.

Give all three explicit flags on every process, or none under SLURM (srun) or another
cluster jax.distributed detects (--multihost for those srun does not cover: Open MPI,
TPU pods). Without any, the run is one process. See README "Multi-process / multi-host".
"""

import _path  # noqa: F401  (repository root on sys.path)
from absl import flags

from jaxlm import distributed

_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0's coordinator (any free port), the same on every "
    "process; with --num_processes and --process_id.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "How many processes take part (one per host, "
                                      "usually).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1; "
                                   "process 0 writes the logs and the caches.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Detect the processes from the cluster's environment "
                               "(jax.distributed.initialize() without arguments: SLURM, Open MPI, TPU pods). "
                               "Under srun with several tasks this happens without the flag.")


def initialize() -> bool:
  """jax.distributed.initialize from the flags or the environment; True when it ran. Call first."""
  return distributed.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                multihost=_MULTIHOST.value)
