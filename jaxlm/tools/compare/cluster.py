"""Cells as cluster jobs: each cell's commands run as one submitit job (SLURM, or submitit's local executor).

launch/compare.py --cluster=slurm submits every cell the scheduler starts as a job through
submitit (the well-kept library for SLURM from Python: submission, job folders, logs, results),
`--parallel` of them at once; --cluster=local runs the same jobs as processes of this machine
(what the tests use). The grid's workdir and the search's study must be on a file system (or,
for the study, a database) the nodes share. A job runs what the local runner runs (the cell's
train command, then its evaluation, logged to its log.txt) from the submitting directory; a SIGTERM
or SIGINT to the job (scancel, the grid stopping) reaches launch/train.py, which saves its
checkpoint, so the cell resumes as it does on one machine.
"""

import os
import threading

from jaxlm.tools.compare import grid as grid_lib
from jaxlm.tools.compare import processes

CLUSTERS = ("slurm", "local")
DEFAULT_TIMEOUT_MINUTES = 24 * 60  # submitit's own default (5 minutes on the local executor) would kill cells


def parse_parameters(items) -> dict:
  """["timeout_min=120", "slurm_partition=cpu"] -> {"timeout_min": 120, "slurm_partition": "cpu"}."""
  parameters = {}
  for item in items:
    key, equals, value = item.partition("=")
    if not equals or not key:
      raise grid_lib.GridError(f"--cluster_parameters: {item!r} is not key=value (e.g. slurm_partition=cpu)")
    parameters[key] = int(value) if value.isdigit() else value
  return parameters


def make_executor(cluster: str, folder: str, parameters: dict):
  """A submitit executor for `cluster` (slurm | local) keeping its job files in `folder`.

  parameters: submitit's update_parameters (timeout_min, slurm_partition, cpus_per_task, ...).
  """
  import submitit
  if cluster not in CLUSTERS:
    raise grid_lib.GridError(f"--cluster={cluster}: give one of {CLUSTERS} (or none to run cells here)")
  try:
    executor = (submitit.LocalExecutor(folder) if cluster == "local"
                else submitit.AutoExecutor(folder, cluster="slurm"))
  except RuntimeError as error:  # no srun on this machine
    raise grid_lib.GridError(f"--cluster={cluster}: {error} Run launch/compare.py on a SLURM login node, or "
                             "leave --cluster out to run the cells here.") from None
  try:
    executor.update_parameters(**{"timeout_min": DEFAULT_TIMEOUT_MINUTES, **parameters})
  except (TypeError, ValueError) as error:  # submitit names the parameter it does not know
    raise grid_lib.GridError(f"--cluster_parameters: {error}") from None
  return executor


def run_cell_commands(cell: grid_lib.Cell, directory: str, compilation_cache: str) -> dict:
  """In the job: what the local runner runs (processes.run_subprocess: the cell's command, then its
  evaluation, logged to the cell's log.txt), on the job's cores, from `directory`.

  Returns {"exit_code", "message", "evaluations", "cpu_seconds"}; a SIGTERM or SIGINT to the job
  is passed on to the running command.
  """
  os.chdir(directory)
  children = processes.Children()
  with children.passing_on_stop_signals(threading.Event()):
    try:
      outcome = processes.run_subprocess(cell, sorted(os.sched_getaffinity(0)), children,
                                         compilation_cache=compilation_cache)
    except processes.CellFailed as error:
      return {"exit_code": error.exit_code, "message": str(error), "evaluations": [], "cpu_seconds": error.cpu_seconds}
  return {"exit_code": 0, "message": "", **outcome}


class SubmititRunner:
  """A scheduler runner (runner(cell, cores, children)) that runs each cell as a submitit job and
  waits for it; `cores` are not used (the cluster places the job)."""

  def __init__(self, executor, compilation_cache: str = ""):
    self.executor, self.compilation_cache = executor, compilation_cache
    self.directory = os.getcwd()  # the cells' commands name launch/*.py relative to it

  def __call__(self, cell: grid_lib.Cell, cores, children: processes.Children) -> dict:
    del cores
    job = children.submit(lambda: self.executor.submit(run_cell_commands, cell, self.directory,
                                                       self.compilation_cache))
    if job is None:
      raise processes.CellFailed(f"{cell.name}: not submitted, the grid was stopped", -children.stop_signal)
    try:
      outcome = job.result()
    except Exception as error:  # the job died outside the commands (killed, timed out, node lost)
      code = -children.stop_signal if children.stop_signal else 1
      raise processes.CellFailed(f"{cell.name}: job {job.job_id} ended without a result ({type(error).__name__}); "
                                 f"see {job.paths.stdout} and {job.paths.stderr}", code) from None
    finally:
      children.finished_job(job)
    if outcome["exit_code"] != 0:
      raise processes.CellFailed(f"job {job.job_id}: {outcome['message']}", outcome["exit_code"],
                                 outcome["cpu_seconds"])
    return {"evaluations": outcome["evaluations"], "cpu_seconds": outcome["cpu_seconds"]}

