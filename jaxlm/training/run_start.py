"""A run's first state in its workdir: a new run's init and starts, or a resumed run's checkpoint.

A new workdir gets the model's init with the run's starts (FastText rows, target vectors, a
pre-trained checkpoint) applied before its description is written, so a start that fails
leaves no workdir. A resume reads nothing but its latest readable checkpoint: a damaged one
(a truncated file, a half-written save) is moved aside to damaged_checkpoints/ and the run
goes on from the previous kept one, saving over nothing; a readable one that does not fit the
state the config builds is refused (checkpoint.MismatchedCheckpointError), except the
optimiser state under an allowed change, which starts anew.
"""

import dataclasses
import os
import sys
import time
from typing import Any

import jax

from jaxlm import checkpoint, distributed, tasks
from jaxlm.training import experiments

DAMAGED_FOLDER = "damaged_checkpoints"


@dataclasses.dataclass
class RunStart:
  state: Any  # experiments.TrainState, at the step the run goes on from
  manager: Any  # the workdir's Orbax checkpoint manager
  resuming: bool  # False: a new workdir (its description written); True: restored from a checkpoint
  changes: list[str]  # the allowed config changes of a resume, and a restarted optimiser state


def start_or_resume(experiment, workdir: str, *, allow_change=()) -> RunStart:
  """The run's first state (the module docstring); refuses a workdir of another run (check_workdir)."""
  config, task = experiment.config, experiment.task
  changes = checkpoint.check_workdir(workdir, config, words=task.words, fingerprint=task.fingerprint,
                                     allow_change=allow_change)  # writes nothing
  resuming = checkpoint.has_checkpoints(workdir)
  state = None
  if not resuming:
    # The starts first (FastText rows, a pre-trained checkpoint): one that fails leaves no workdir.
    state = experiments.init_experiment_state(experiment)
    write_description(experiment, workdir)
  manager = checkpoint.manager(workdir, config.train.keep_checkpoints, best_metric=task.best_metric,
                               best_mode=task.best_mode, keep_steps=config.train.keep_steps)
  checkpoint.check_writable(manager.directory)  # now, not at the first save after training
  if resuming:
    state, changes = _resume(experiment, workdir, manager, changes)
  return RunStart(state=state, manager=manager, resuming=resuming, changes=changes)


def write_description(experiment, workdir: str) -> None:
  """config.json, run.json, the vocabulary, fingerprint and SentencePiece model of the run."""
  config, task = experiment.config, experiment.task
  checkpoint.write_workdir(workdir, config, words=task.words, fingerprint=task.fingerprint,
                           sentencepiece_model=task.sentencepiece_model,
                           run={"task": tasks.task_name(config), "best_metric": task.best_metric,
                                "best_mode": task.best_mode})


def _resume(experiment, workdir: str, manager, changes: list[str]):
  """(state, changes): the latest readable checkpoint, damaged ones moved aside."""
  def move_aside(step):
    if jax.process_index() == 0:
      aside = os.path.join(workdir, DAMAGED_FOLDER)
      os.makedirs(aside, exist_ok=True)
      os.replace(os.path.join(str(manager.directory), str(step)),
                 os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"))
    distributed.barrier(f"damaged checkpoint {step} moved aside")
  # An allowed change (optim.clip_norm, optim.name, ...) can change the optimiser state's
  # tree: the parameters restore and the optimiser state starts anew. Without one, a state
  # that does not fit is refused, never moved aside.
  try:
    _, state, restarted = checkpoint.restore_readable(manager, experiments.experiment_target(experiment),
                                                      on_damaged=move_aside,
                                                      restartable=("opt_state",) if changes else ())
  except checkpoint.DamagedCheckpointError as error:
    raise checkpoint.DamagedCheckpointError(
        f"{error} They were moved to {os.path.join(workdir, DAMAGED_FOLDER)}/: the same command now "
        "starts this run again from step 0.") from None
  if restarted:
    state = state.replace(opt_state=experiments.restart_optimizer_state(experiment, state))
    changes = changes + [f"optimiser state restarted at step {int(state.step)} (the saved one does not fit: "
                         f"{restarted['opt_state']}); parameters restored, moments from zero"]
    if distributed.is_primary():
      print(f"jaxlm: {changes[-1]}", file=sys.stderr)
  manager.reload()
  return state, changes
