"""The one training loop: steps, logs, validation, checkpoints, and the guards around them.

Data are functions of the step (batch = task.train_batch(step)) and so is randomness
(jaxlm.training.steps), so a resumed run repeats the uninterrupted one. The task (its data,
model, loss, evaluation and best metric: jaxlm/tasks/base.py) and the optimiser are passed in
through the experiment (jaxlm.training.experiments); the loop never branches on the task or
the model family.
"""

import json
import math
import os
import signal
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections

from jaxlm import checkpoint, distributed, errors, metrics, tasks
from jaxlm.data import text_files
from jaxlm.training import evaluation, experiments, optim, steps


class MetricWriter:
  """JSON lines in the workdir plus TensorBoard event files (no TensorFlow needed)."""

  def __init__(self, workdir: str):
    self.enabled, self.workdir = jax.process_index() == 0, workdir
    self.jsonl = self.tensorboard = None  # opened at the first record: a run with none writes no file

  def write(self, step: int, kind: str, values: dict) -> None:
    if not self.enabled:
      return
    if self.jsonl is None:
      from tensorboardX import SummaryWriter
      self.jsonl = open(os.path.join(self.workdir, "metrics.jsonl"), "a")
      self.tensorboard = SummaryWriter(self.workdir)
    self.jsonl.write(json.dumps({"step": step, "kind": kind, **values}) + "\n")
    self.jsonl.flush()
    for key, value in values.items():
      if isinstance(value, (int, float)) and math.isfinite(value):
        self.tensorboard.add_scalar(f"{kind}/{key}", value, step)
    self.tensorboard.flush()

  def close(self):
    if self.jsonl is not None:
      self.jsonl.close()
      self.tensorboard.close()


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """A NaN/Inf loss, gradient or parameter stopped the run; the message names the last finite checkpoint."""


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT stopped the run after a checkpoint of the step it finished."""

  def __init__(self, signal_number: int, step: int, directory: str):
    self.signal_number, self.step = signal_number, step
    super().__init__(f"{signal.Signals(signal_number).name} received: finished step {step}, validated it and "
                     f"saved checkpoint {step} in {directory}; run the same command to resume")


class StopSignals:
  """Turns SIGTERM and SIGINT into a request the loop reads after each step (main thread only).

  A second signal of the same kind stops at once, as the default handler would.
  """

  NAMES = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received = None
    self.previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for number in self.NAMES:
        self.previous[number] = signal.signal(number, self.handle)
    return self

  def handle(self, number, frame):
    if self.received is not None:
      signal.signal(number, self.previous.get(number, signal.SIG_DFL))
      signal.raise_signal(number)
      return
    self.received = number

  def __exit__(self, *exc):
    for number, handler in self.previous.items():
      signal.signal(number, handler)


def _without_norms(sums: dict) -> tuple[dict, dict]:
  """Splits the step's parameter/gradient/update norms and its non-finite count from the task's sums."""
  norms = {key: value for key, value in sums.items() if key.endswith("_norm") or key == "nonfinite_steps"}
  return {key: value for key, value in sums.items() if key not in norms}, norms


class FiniteGuard:
  """Knows, at every step that logs or saves, whether the steps so far were finite.

  max_bad_steps 0: any step whose loss, gradient or new parameters are not finite stops the
  run. N > 0: the step skipped them (make_train_step's skip_nonfinite); more than N in the
  run stops it. Skipped steps are counted from metrics.jsonl on a resume. With several
  processes the stop is agreed (the sums are global, but metrics.jsonl might be read apart).
  """

  def __init__(self, max_bad_steps: int, workdir: str, start_step: int, checkpoint_manager):
    self.max_bad_steps, self.manager = max_bad_steps, checkpoint_manager
    self.skipped = 0  # in logged intervals
    for record in read_records(workdir):
      if record.get("kind") == "train" and record["step"] <= start_step:
        self.skipped += int(record.get("skipped_steps", 0))

  def check(self, step_range, sums: dict, *, logged: bool) -> None:
    """sums: host values of the interval's summed step metrics. logged: the interval ends here."""
    bad = int(round(sums.get("nonfinite_steps", 0.0)))
    total = self.skipped + bad
    if logged:
      self.skipped = total
    what = None
    if bad and (self.max_bad_steps == 0 or total > self.max_bad_steps):
      what = (f"loss, gradient or parameters became NaN/Inf between steps {step_range[0]} and {step_range[1]} "
              f"(loss_sum={sums['loss_sum']}, grad_norm={sums['grad_norm']})")
      if self.max_bad_steps:
        what = (f"{total} steps had a NaN/Inf loss or gradient, more than train.max_bad_steps="
                f"{self.max_bad_steps}; the last between steps {step_range[0]} and {step_range[1]}")
    self.stop_if(what)

  def check_validation(self, step: int, metric: str, value: float) -> None:
    self.stop_if(None if math.isfinite(value) else f"validation {metric} at step {step} is {value}")

  def stop_if(self, what: str | None) -> None:
    """Stops every process when any found a reason (`what`, None: none here)."""
    if distributed.agree_any([what is not None])[0]:
      self.stop(what or f"another process (of {jax.process_count()}) found a NaN/Inf at this step")

  def stop(self, what: str):
    kept = self.manager.latest_step()
    last = (f"the last finite checkpoint is step {kept} in {self.manager.directory} (this state was not saved)"
            if kept is not None else "no checkpoint was saved")
    raise NonFiniteLossError(f"{what}. Training stopped; {last}. Lower optim.lr, raise optim.warmup_steps, "
                             "or set train.max_bad_steps to skip a few bad steps.")


def keep_records_up_to(workdir: str, step: int) -> None:
  """Drops metrics.jsonl records of steps after `step` (atomically: a copy, then a rename).

  Process 0 rewrites the file; every process returns once it has (a barrier), so all then
  read the same records.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if jax.process_index() == 0 and os.path.exists(path):
    with open(path) as handle:
      lines = handle.readlines()
    kept = [line for line in lines if line.strip() and line.endswith("\n") and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
      text_files.write_text(path, "".join(kept))
  distributed.barrier("metrics.jsonl up to the restored step")


def read_records(workdir: str) -> list[dict]:
  """metrics.jsonl's records in step order (jaxlm.metrics.read_records); none before the first log."""
  path = os.path.join(workdir, "metrics.jsonl")
  return metrics.read_records(path) if os.path.exists(path) else []


def every(step: int, interval: int) -> bool:
  """True every `interval` steps; interval 0 is "off" (only the run's last step logs or validates)."""
  return interval > 0 and step % interval == 0


class EarlyStopping:
  """Counts validations since the best one, by the task's metric (train.patience).

  Rebuilt on a resume from the validations metrics.jsonl recorded up to the restored
  step, so a resumed run stops where the uninterrupted one would have.
  """

  def __init__(self, task, patience: int, workdir: str, start_step: int):
    self.metric, self.sign, self.patience = task.best_metric, 1.0 if task.best_mode == "min" else -1.0, patience
    self.best, self.since_best = math.inf, 0
    for record in read_records(workdir):
      if (record.get("kind") == "valid" and record["step"] <= start_step and self.metric in record
          and not record.get("interrupted")):
        self.update(record[self.metric])

  def update(self, value: float) -> bool:
    """Records a validation; True when patience has run out."""
    if self.sign * value < self.best:
      self.best, self.since_best = self.sign * value, 0
    else:
      self.since_best += 1
    return self.patience > 0 and self.since_best >= self.patience


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
                       allow_change=()) -> dict:
  """Trains (resuming from the workdir's latest checkpoint if any); returns the last validation summary.

  progress: a tqdm bar with the latest loss (for a terminal); without it, one line a log
  interval ("step 50: train loss 0.6215, 3638 tokens/s"), which a log file keeps readable.
  A resume must be the same run (checkpoint.check_workdir: seed, data and its fingerprint,
  vocabulary, model, optimiser, schedule, batch); allow_change names intended differences
  (e.g. ("train.steps",)), which are then recorded in metrics.jsonl as kind "config_change".
  With several processes (jaxlm.distributed) every process calls it: each reads its rows of
  every batch, process 0 writes the logs and progress, all save and restore the checkpoints
  together, and every decision to stop is agreed so all stop after the same step.
  """
  from tqdm import tqdm
  experiment = experiments.build_experiment(config)  # reads the data (writing only to its cache), so the checks see it
  task, model, mesh, train_config = experiment.task, experiment.model, experiment.mesh, config.train
  workdir_files = dict(words=task.words, fingerprint=task.fingerprint, sentencepiece_model=task.sentencepiece_model,
                       run={"task": tasks.task_name(config), "best_metric": task.best_metric,
                            "best_mode": task.best_mode})
  changes = checkpoint.check_workdir(workdir, config, words=task.words, fingerprint=task.fingerprint,
                                     allow_change=allow_change)  # writes nothing
  resuming = checkpoint.has_checkpoints(workdir)
  if not resuming:
    # The starts first (FastText rows, a pre-trained checkpoint): one that fails leaves no workdir.
    state = experiments.init_experiment_state(experiment)
    checkpoint.write_workdir(workdir, config, **workdir_files)
  manager = checkpoint.manager(workdir, train_config.keep_checkpoints, best_metric=task.best_metric,
                               best_mode=task.best_mode)
  checkpoint.check_writable(manager.directory)  # now, not at the first save after training

  if resuming:  # a resume reads nothing but the checkpoint (no FastText or target-vector files)
    # A damaged checkpoint (a truncated file, a half-written save) is moved aside to
    # damaged_checkpoints/, so the run goes on from the previous kept one and saves over nothing.
    def move_aside(step):
      if jax.process_index() == 0:
        aside = os.path.join(workdir, "damaged_checkpoints")
        os.makedirs(aside, exist_ok=True)
        os.replace(os.path.join(str(manager.directory), str(step)),
                   os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"))
      distributed.barrier(f"damaged checkpoint {step} moved aside")
    # An allowed change (optim.clip_norm, optim.name, ...) can change the optimiser state's
    # tree: the parameters restore and the optimiser state starts anew. Without one, a state
    # that does not fit is refused (checkpoint.MismatchedCheckpointError), never moved aside.
    try:
      _, state, restarted = checkpoint.restore_readable(manager, experiments.experiment_target(experiment),
                                                        on_damaged=move_aside,
                                                        restartable=("opt_state",) if changes else ())
    except checkpoint.DamagedCheckpointError as error:
      raise checkpoint.DamagedCheckpointError(
          f"{error} They were moved to {os.path.join(workdir, 'damaged_checkpoints')}/: the same command now "
          "starts this run again from step 0.") from None
    if restarted:
      state = state.replace(opt_state=experiments.restart_optimizer_state(experiment, state))
      changes = changes + [f"optimiser state restarted at step {int(state.step)} (the saved one does not fit: "
                           f"{restarted['opt_state']}); parameters restored, moments from zero"]
      if distributed.is_primary():
        print(f"jaxlm: {changes[-1]}", file=sys.stderr)
    manager.reload()
  start_step = int(state.step)
  # Records after the restored step belong to steps this run repeats: dropped, not duplicated.
  keep_records_up_to(workdir, start_step)  # then a barrier: every process reads the same records below

  early_stopping = EarlyStopping(task, train_config.patience, workdir, start_step)
  max_bad_steps = train_config.max_bad_steps
  guard = FiniteGuard(max_bad_steps, workdir, start_step, manager)
  train_step = steps.make_train_step(model, task.loss, experiment.optimizer, mesh, state, config.seed,
                               skip_nonfinite=max_bad_steps > 0, microbatches=train_config.microbatches)
  evaluate_split = evaluation.make_evaluator(experiment)
  writer = MetricWriter(workdir)
  if changes:
    writer.write(start_step, "config_change", {"changes": changes})
  # A resume rewrites config.json (with any allowed change) only with its first checkpoint, so a
  # resume that fails before saving leaves the workdir's description as its checkpoints are.
  workdir_written = not resuming
  schedule = optim.build_schedule(config.optim, train_config.steps)

  def validate(step, training_seconds=None, interrupted=False, record=True):
    summary = evaluate_split(state, "valid", batch_size=train_config.eval_batch_size,
                             limit=train_config.eval_tokens)
    if training_seconds is not None:
      summary["training_seconds"] = training_seconds
    if record:  # A validation the uninterrupted run would not have made: early stopping skips it.
      writer.write(step, "valid", {**summary, "interrupted": True} if interrupted else summary)
    return summary

  bar = tqdm(total=train_config.steps, initial=start_step, disable=not progress or not distributed.is_primary(),
             dynamic_ncols=True, desc="train")
  say = bar.write if distributed.is_primary() else lambda line: None  # tqdm.write prints even when disabled
  started = time.time()
  # Test-only: seconds added to this process's clock where the train.max_minutes budget is read, so a
  # test can make one process run out of time first (tests/test_multiprocess.py). Unset in real runs.
  clock_skew = float(os.environ.get("JAXLM_TEST_CLOCK_SKEW_SECONDS", "0"))
  interval_sums, interval_start, interval_time = None, start_step, time.time()
  interval_inputs = 0  # input positions (tokens) of the global batches since the last log
  paused_seconds = 0.0  # evaluation and saving inside the current log interval: not training time
  # Wall time spent in training steps by this process (evaluation and saving excluded): the
  # x axis for quality-against-time comparisons. A resumed run starts it again from 0.
  training_seconds = 0.0
  last_valid = None
  step = start_step
  in_flight = evaluation.InFlight()
  stop_signals = StopSignals()
  try:
    stop_signals.__enter__()
    while step < train_config.steps:
      local = task.train_batch(step, seed=config.seed, batch_size=train_config.batch_size,
                               process_index=jax.process_index(), process_count=jax.process_count())
      state, step_metrics = train_step(state, experiments.global_batch(mesh, local))
      in_flight.add(step_metrics)
      step += 1
      interval_inputs += local["inputs"].size * jax.process_count()
      interval_sums = step_metrics if interval_sums is None else jax.tree.map(jnp.add, interval_sums, step_metrics)
      out_of_time = train_config.max_minutes > 0 and time.time() + clock_skew - started > 60 * train_config.max_minutes
      # SIGTERM/SIGINT: this step is logged, validated and saved like a last one (but not ranked
      # for best: the uninterrupted run never validated it), then the run stops. Every process stops at the
      # step any one of them ran out of time or got a signal (SIGTERM wins over SIGINT), or the
      # others would wait alone in the next step's collectives: one small all-gather a step.
      out_of_time, signal_number = distributed.agree_max([out_of_time, stop_signals.received or 0])
      signalled = signal_number > 0
      at_end = step == train_config.steps or out_of_time or signalled
      if every(step, train_config.log_every) or at_end:
        sums, norms = _without_norms(evaluation.host_values(interval_sums))
        guard.check((interval_start + 1, step), {**sums, **norms}, logged=True)
        steps_done = step - interval_start
        skipped = int(round(norms.pop("nonfinite_steps")))
        summary = task.summarise(sums)
        # Averages over the interval (a skipped step's norms are zeros: averaged over the others).
        summary.update({key: value / max(steps_done - skipped, 1) for key, value in norms.items()})
        if max_bad_steps:
          summary["skipped_steps"] = skipped
        elapsed = time.time() - interval_time - paused_seconds
        training_seconds += elapsed
        summary.update(tokens_per_second=interval_inputs / elapsed,
                       examples_per_second=steps_done * train_config.batch_size / elapsed,
                       learning_rate=float(schedule(step)), training_seconds=training_seconds)
        writer.write(step, "train", summary)
        bar.set_postfix(loss=f"{summary['loss']:.3f}", tok_s=f"{summary['tokens_per_second']:.0f}")
        if not progress:
          say(f"step {step}: train loss {summary['loss']:.4f}, {summary['tokens_per_second']:.0f} tokens/s")
        interval_sums, interval_start, interval_time, paused_seconds = None, step, time.time(), 0.0
        interval_inputs = 0
      if every(step, train_config.eval_every) or at_end:
        # The steps since the last log are training time too (eval_every need not be a
        # multiple of log_every); the next log counts them, without this pause.
        paused_from = time.time()
        if interval_sums is not None:  # the steps since the last log: finite, or few enough skipped?
          guard.check((interval_start + 1, step), evaluation.host_values(interval_sums), logged=False)
        off_schedule = signalled and not every(step, train_config.eval_every) and step < train_config.steps
        last_valid = validate(step, training_seconds + paused_from - interval_time - paused_seconds,
                              interrupted=off_schedule)
        say(f"step {step}: valid {task.describe(last_valid)}")
        guard.check_validation(step, task.best_metric, last_valid[task.best_metric])
        if not workdir_written:  # a resume's config (and its allowed changes) with its first checkpoint
          checkpoint.write_workdir(workdir, config, **workdir_files)
          workdir_written = True
        checkpoint.save(manager, step, state, {task.best_metric: last_valid[task.best_metric]},
                        off_schedule=off_schedule)
        paused_seconds += time.time() - paused_from
        # The same global value everywhere; agreed still, as each process read metrics.jsonl itself.
        patience_over = not off_schedule and early_stopping.update(last_valid[task.best_metric])
        if distributed.agree_any([patience_over])[0]:
          say(f"stopping at step {step}: no better valid {task.best_metric} in the last "
              f"train.patience={train_config.patience} validations")
          break
      bar.update(1)
      if signalled and step < train_config.steps:
        raise TrainingInterrupted(signal_number, step, manager.directory)
      if out_of_time:
        say(f"stopping at step {step}: train.max_minutes={train_config.max_minutes} reached")
        break
    if last_valid is None:  # nothing left to train (a finished run started again): report its state
      last_valid = validate(step, record=False)  # metrics.jsonl already holds this step's validation
  finally:
    stop_signals.__exit__()
    bar.close()
    writer.close()
    manager.close()
  return last_valid
