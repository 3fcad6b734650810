"""The one training loop: steps, logs, validation, checkpoints, and the guards around them.

Data are functions of the step (batch = task.train_batch(step)) and so is randomness
(jaxlm.training.steps), so a resumed run repeats the uninterrupted one. The task (its data,
model, loss, evaluation and best metric: jaxlm/tasks/base.py) and the optimiser are passed in
through the experiment (jaxlm.training.experiments); the loop never branches on the task or
the model family.
"""

import collections
import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxlm import checkpoint, distributed, errors, metrics
from jaxlm.data import text_files
from jaxlm.training import evaluation, experiments, optim, run_start, steps


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

  A context manager: `with StopSignals() as signals:` handles them inside the block and puts
  the previous handlers back when it ends, by an exception too. `received` is the first
  signal's number (None: none). A second signal of the same kind stops at once, as the
  default handler would.
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
    self.previous = {}


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


def validations_up_to(workdir: str, start_step: int, metric: str) -> list[float]:
  """`metric` of the validations metrics.jsonl recorded up to `start_step`, in order, without those a
  stop made off schedule (interrupted): what a resumed run's counters are rebuilt from."""
  return [record[metric] for record in read_records(workdir)
          if record.get("kind") == "valid" and record["step"] <= start_step and metric in record
          and not record.get("interrupted")]


def every(step: int, interval: int) -> bool:
  """True every `interval` steps; interval 0 is "off" (only the run's last step logs or validates)."""
  return interval > 0 and step % interval == 0


@dataclasses.dataclass
class Intervals:
  """When the loop logs, validates and stops, and the running totals of its current log interval.

  Steps are counted after they run: step s is the s-th step of the run. A log interval is the
  steps after the last log (or after the restored step) up to the next log; its wall time,
  less the evaluation and saving inside it, is training time. Every wall-clock reading is
  `clock()`, the first one when the object is made (the start of the max_minutes budget and
  of the first log interval).
  """
  steps: int  # train.steps: the run's last step
  log_every: int  # train.log_every: a train record every this many steps (0: none but the last step's)
  eval_every: int  # train.eval_every: a validation every this many steps (0: the last step only)
  max_minutes: float  # train.max_minutes: this process's wall-clock budget from the start (0: none)
  clock: Callable[[], float]  # wall-clock seconds
  log_start: int  # the last logged step (the restored step before the first log)
  started: float = dataclasses.field(init=False)  # clock() at the start: the max_minutes budget counts from it
  log_start_time: float = dataclasses.field(init=False)  # clock() when the log interval started
  sums: Any = None  # the log interval's summed step metrics (device values); None before its first step
  inputs: int = 0  # input positions (tokens) of the log interval's global batches
  paused_seconds: float = 0.0  # evaluation and saving inside the log interval: not training time
  # Wall time spent in training steps by this process (evaluation and saving excluded): the
  # x axis for quality-against-time comparisons. A resumed run starts it again from 0.
  training_seconds: float = 0.0

  def __post_init__(self):
    self.started = self.log_start_time = self.clock()

  def add_step(self, step_metrics, inputs: int) -> None:
    """Adds a step's metrics (device values) and its global batch's input positions to the log interval."""
    self.inputs += inputs
    self.sums = step_metrics if self.sums is None else jax.tree.map(jnp.add, self.sums, step_metrics)

  def out_of_time(self) -> bool:
    """This process has spent its train.max_minutes (never, with max_minutes 0)."""
    return self.max_minutes > 0 and self.clock() - self.started > 60 * self.max_minutes

  def due_to_log(self, step: int, stopping: bool) -> bool:
    """A train record after `step`: every log_every steps, at the run's last step and at a stop."""
    return every(step, self.log_every) or step == self.steps or stopping

  def due_to_validate(self, step: int, stopping: bool) -> bool:
    """A validation after `step` (and maybe a checkpoint: CheckpointSchedule): every eval_every steps, at
    the last step and at a stop."""
    return every(step, self.eval_every) or step == self.steps or stopping

  def off_schedule(self, step: int, signalled: bool) -> bool:
    """A validation at `step` the uninterrupted run would not make (a signal's stop between validations)."""
    return signalled and not every(step, self.eval_every) and step < self.steps

  def step_range(self, step: int) -> tuple[int, int]:
    """The first and last steps of the log interval that `step` ends."""
    return self.log_start + 1, step

  def log_seconds(self) -> float:
    """Training seconds of the log interval ending now (its pauses excluded), added to training_seconds."""
    elapsed = self.clock() - self.log_start_time - self.paused_seconds
    self.training_seconds += elapsed
    return elapsed

  def start_log_interval(self, step: int) -> None:
    """The next log interval: the steps after `step`, from now."""
    self.sums, self.log_start, self.log_start_time, self.paused_seconds = None, step, self.clock(), 0.0
    self.inputs = 0

  @contextlib.contextmanager
  def paused(self):
    """Evaluation and saving inside the block: not training time for the next log.

    Yields the training seconds up to the block (the steps since the last log included).
    """
    paused_from = self.clock()
    yield self.training_seconds + paused_from - self.log_start_time - self.paused_seconds
    self.paused_seconds += self.clock() - paused_from


class EarlyStopping:
  """Counts validations since the best one, by the task's metric (train.patience).

  window (train.patience_window): the metric it follows is the mean of the last `window`
  validations (fewer before there are that many), so that one noisy validation neither
  resets the count nor ends it; 1 follows each validation as it is. The best checkpoint is
  still picked by each validation's own value. Rebuilt on a resume from the validations
  metrics.jsonl recorded up to the restored step, so a resumed run stops where the
  uninterrupted one would have.
  """

  def __init__(self, task, patience: int, workdir: str, start_step: int, window: int = 1):
    if window < 1:
      raise errors.ConfigError(f"train.patience_window={window}: give 1 (each validation) or more (a moving mean)")
    self.metric, self.sign, self.patience = task.best_metric, 1.0 if task.best_mode == "min" else -1.0, patience
    self.best, self.since_best = math.inf, 0
    self.recent = collections.deque(maxlen=window)  # the last `window` validations' values
    for value in validations_up_to(workdir, start_step, self.metric):
      self.update(value)

  def update(self, value: float) -> bool:
    """Records a validation; True when patience has run out."""
    self.recent.append(value)
    smoothed = sum(self.recent) / len(self.recent)
    if self.sign * smoothed < self.best:
      self.best, self.since_best = self.sign * smoothed, 0
    else:
      self.since_best += 1
    return self.patience > 0 and self.since_best >= self.patience


class CheckpointSchedule:
  """Which validations save a checkpoint (train.checkpoint_every).

  Every validation that is at least as good as the best so far saves (the best checkpoint
  must exist; a tie saves too, so the later of equal validations is the best, as Orbax ranks
  them), and so do the run's last step and a stop (a signal, the time budget, patience). The
  others save only when at least `every` steps have passed since the last saved step; `every`
  0 saves every validation. The steps a save skips cost a resume nothing but time: it repeats
  them exactly from the last saved step. Rebuilt on a resume from the validations
  metrics.jsonl recorded up to the restored step (which was saved).
  """

  def __init__(self, task, every: int, workdir: str, start_step: int, keep_steps=()):
    if every < 0:
      raise errors.ConfigError(f"train.checkpoint_every={every}: give 0 (every validation saves) or a number "
                               "of steps")
    self.metric, self.sign, self.every = task.best_metric, 1.0 if task.best_mode == "min" else -1.0, every
    self.keep_steps = frozenset(int(step) for step in keep_steps)  # always saved (and kept: checkpoint.manager)
    self.best = min((self.sign * value for value in validations_up_to(workdir, start_step, self.metric)),
                    default=math.inf)
    self.last_saved = start_step

  def saves(self, step: int, value: float, *, final: bool, off_schedule: bool) -> bool:
    """Records the validation of `step`; True when it saves a checkpoint. final: the run ends at
    this step. off_schedule: a stop's validation the uninterrupted run would not make (never the best)."""
    as_good = not off_schedule and self.sign * value <= self.best
    if as_good:
      self.best = self.sign * value
    due = final or as_good or self.every == 0 or step - self.last_saved >= self.every or step in self.keep_steps
    if due:
      self.last_saved = step
    return due


def check_keep_steps(train_config) -> None:
  """train.keep_steps must name steps the run validates (and so can save): every eval_every, or the last."""
  wrong = [step for step in train_config.keep_steps
           if not (0 < step <= train_config.steps and (every(step, train_config.eval_every) or step == train_config.steps))]
  if wrong:
    raise errors.ConfigError(
        f"train.keep_steps={tuple(train_config.keep_steps)}: {wrong} are not validation steps of this run (multiples "
        f"of train.eval_every={train_config.eval_every} up to train.steps={train_config.steps}, or the last step); "
        "a checkpoint is saved only where the run validates")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
                       allow_change=(), clock: Callable[[], float] = time.time) -> dict:
  """Trains (resuming from the workdir's latest checkpoint if any); returns the last validation summary.

  progress: a tqdm bar with the latest loss (for a terminal); without it, one line a log
  interval ("step 50: train loss 0.6215, 3638 tokens/s"), which a log file keeps readable.
  A resume must be the same run (checkpoint.check_workdir: seed, data and its fingerprint,
  vocabulary, model, optimiser, schedule, batch); allow_change names intended differences
  (e.g. ("train.steps",)), which are then recorded in metrics.jsonl as kind "config_change".
  With several processes (jaxlm.distributed) every process calls it: each reads its rows of
  every batch, process 0 writes the logs and progress, all save and restore the checkpoints
  together, and every decision to stop is agreed so all stop after the same step.
  clock: the wall clock (seconds) of every timing and of the train.max_minutes budget (Intervals).
  """
  from tqdm import tqdm
  check_keep_steps(config.train)  # before anything is read or written
  experiment = experiments.build_experiment(config)  # reads the data (writing only to its cache), so the checks see it
  task, model, mesh, train_config = experiment.task, experiment.model, experiment.mesh, config.train
  started = run_start.start_or_resume(experiment, workdir, allow_change=allow_change)
  state, manager, changes = started.state, started.manager, started.changes
  start_step = int(state.step)
  # Records after the restored step belong to steps this run repeats: dropped, not duplicated.
  keep_records_up_to(workdir, start_step)  # then a barrier: every process reads the same records below

  early_stopping = EarlyStopping(task, train_config.patience, workdir, start_step, train_config.patience_window)
  checkpoint_schedule = CheckpointSchedule(task, train_config.checkpoint_every, workdir, start_step,
                                           train_config.keep_steps)
  # The learning curve's cost axis: this process's CPU-seconds since it started (imports, data,
  # compile and every validation included), continued over resumes from the restored step's record.
  cpu_before = max((record["cpu_seconds"] for record in read_records(workdir)
                    if record["step"] <= start_step and "cpu_seconds" in record), default=0.0)
  max_bad_steps = train_config.max_bad_steps
  guard = FiniteGuard(max_bad_steps, workdir, start_step, manager)
  train_step = steps.make_train_step(model, task.loss, experiment.optimizer, mesh, state, config.seed,
                               skip_nonfinite=max_bad_steps > 0, microbatches=train_config.microbatches,
                               sparse_embeddings=optim.lazy_embeddings(config.optim))
  evaluate_split = evaluation.make_evaluator(experiment)
  parameter_norm = jax.jit(optax.tree.norm)
  writer = MetricWriter(workdir)
  if changes:
    writer.write(start_step, "config_change", {"changes": changes})
  # A resume rewrites config.json (with any allowed change) only with its first checkpoint, so a
  # resume that fails before saving leaves the workdir's description as its checkpoints are.
  workdir_written = not started.resuming
  schedule = optim.build_schedule(config.optim, train_config.steps)

  def validate(step, training_seconds=None, interrupted=False, record=True):
    summary = evaluate_split(state, "valid", batch_size=train_config.eval_batch_size,
                             limit=train_config.eval_tokens)
    if training_seconds is not None:
      summary["training_seconds"] = training_seconds
    summary["examples_seen"] = step * train_config.batch_size  # a learning curve's x axis beside time
    summary["cpu_seconds"] = cpu_before + time.process_time()
    if record:  # A validation the uninterrupted run would not have made: early stopping skips it.
      writer.write(step, "valid", {**summary, "interrupted": True} if interrupted else summary)
    return summary

  bar = tqdm(total=train_config.steps, initial=start_step, disable=not progress or not distributed.is_primary(),
             dynamic_ncols=True, desc="train")
  say = bar.write if distributed.is_primary() else lambda line: None  # tqdm.write prints even when disabled
  intervals = Intervals(train_config.steps, train_config.log_every, train_config.eval_every,
                        train_config.max_minutes, clock, log_start=start_step)
  last_valid = None
  step = start_step
  in_flight = evaluation.InFlight()
  try:
    with StopSignals() as signals:
      while step < train_config.steps:
        local = task.train_batch(step, seed=config.seed, batch_size=train_config.batch_size,
                                 process_index=jax.process_index(), process_count=jax.process_count())
        # The host rows too: lazy embedding updates find the rows a batch reads from them.
        state, step_metrics = train_step(state, experiments.global_batch(mesh, local), host_inputs=local["inputs"])
        in_flight.add(step_metrics)
        step += 1
        intervals.add_step(step_metrics, local["inputs"].size * jax.process_count())
        # SIGTERM/SIGINT: this step is logged, validated and saved like a last one (but not ranked
        # for best: the uninterrupted run never validated it), then the run stops. Every process stops at the
        # step any one of them ran out of time or got a signal (SIGTERM wins over SIGINT), or the
        # others would wait alone in the next step's collectives: one small all-gather a step.
        out_of_time, signal_number = distributed.agree_max([intervals.out_of_time(), signals.received or 0])
        signalled = signal_number > 0
        stopping = bool(out_of_time) or signalled
        if intervals.due_to_log(step, stopping):
          sums, norms = _without_norms(evaluation.host_values(intervals.sums))
          guard.check(intervals.step_range(step), {**sums, **norms}, logged=True)
          steps_done = step - intervals.log_start
          skipped = int(round(norms.pop("nonfinite_steps")))
          summary = task.summarise(sums)
          # Averages over the interval (a skipped step's norms are zeros: averaged over the others).
          summary.update({key: value / max(steps_done - skipped, 1) for key, value in norms.items()})
          if max_bad_steps:
            summary["skipped_steps"] = skipped
          elapsed = intervals.log_seconds()
          summary["param_norm"] = float(parameter_norm(state.params))  # at this step (the step leaves it out)
          summary.update(tokens_per_second=intervals.inputs / elapsed,
                         examples_per_second=steps_done * train_config.batch_size / elapsed,
                         learning_rate=float(schedule(step)), training_seconds=intervals.training_seconds)
          writer.write(step, "train", summary)
          bar.set_postfix(loss=f"{summary['loss']:.3f}", tok_s=f"{summary['tokens_per_second']:.0f}")
          if not progress:
            say(f"step {step}: train loss {summary['loss']:.4f}, {summary['tokens_per_second']:.0f} tokens/s")
          intervals.start_log_interval(step)
        if intervals.due_to_validate(step, stopping):
          # The steps since the last log are training time too (eval_every need not be a
          # multiple of log_every); the next log counts them, without this pause.
          off_schedule = intervals.off_schedule(step, signalled)
          with intervals.paused() as training_seconds:
            if intervals.sums is not None:  # the steps since the last log: finite, or few enough skipped?
              guard.check(intervals.step_range(step), evaluation.host_values(intervals.sums), logged=False)
            last_valid = validate(step, training_seconds, interrupted=off_schedule)
            say(f"step {step}: valid {task.describe(last_valid)}")
            value = last_valid[task.best_metric]
            guard.check_validation(step, task.best_metric, value)
            # The same global value everywhere; agreed still, as each process read metrics.jsonl itself.
            patience_over = distributed.agree_any([not off_schedule and early_stopping.update(value)])[0]
            if checkpoint_schedule.saves(step, value, final=stopping or patience_over or step == train_config.steps,
                                         off_schedule=off_schedule):
              if not workdir_written:  # a resume's config (and its allowed changes) with its first checkpoint
                run_start.write_description(experiment, workdir)
                workdir_written = True
              checkpoint.save(manager, step, state, {task.best_metric: value}, off_schedule=off_schedule)
          if patience_over:
            smoothed = (f" (mean of the last {train_config.patience_window})"
                        if train_config.patience_window > 1 else "")
            say(f"stopping at step {step}: no better valid {task.best_metric}{smoothed} in the last "
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
    bar.close()
    writer.close()
    manager.close()
  return last_valid
