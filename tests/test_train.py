"""The train step, the loop, checkpoints and the guards around them."""

import json
import os
import re

import jax
import numpy as np
import pytest

from conftest import smoke_config
from jaxlm import checkpoint, errors
from jaxlm.training import experiments, loop, optim, steps
from jaxlm.data import lm_batches
from jaxlm.models import build_model
from jaxlm.tasks import causal_lm


def step_on(config, devices, vocab_size=60):
  """(mesh, initial state, jitted train step) of `config` on `devices`."""
  model = build_model(config.model, vocab_size)
  optimizer = optim.build_optimizer(config.optim, config.train.steps)
  mesh = experiments.make_mesh(devices)
  state = experiments.init_state(model, optimizer, config, mesh)
  return mesh, state, steps.make_train_step(model, causal_lm.batch_loss(config.model), optimizer, mesh, state,
                                            config.seed)


def one_step_params(config, devices, vocab_size=60):
  mesh, state, step = step_on(config, devices, vocab_size)
  tokens = np.random.default_rng(0).integers(0, vocab_size, 5000).astype(np.int32)
  batch = lm_batches.window_batch(tokens, 0, seed=0, batch_size=config.train.batch_size,
                                  length=config.train.seq_len)
  state, step_metrics = step(state, experiments.global_batch(mesh, batch))
  return jax.device_get(state.params), jax.device_get(step_metrics)


# The adaptive head gathers each device's tail-cluster tokens on its own (lax.cond per device).
@pytest.mark.parametrize("head", ["softmax", "adaptive"])
def test_four_devices_match_one_device_for_the_same_global_batch(tiny_corpus, cache_dir, head):
  assert jax.device_count() == 4, "tests/conftest.py simulates 4 CPU devices"
  config = smoke_config(tiny_corpus, cache_dir, **{"model.transformer.dropout": 0.0, "model.head": head})
  # SGD: Adam's first step is about sign(gradient), which turns float summation-order
  # noise in near-zero gradients into lr-sized differences and hides what is tested.
  config.optim.name, config.optim.lr, config.optim.momentum = "sgd", 0.5, 0.0
  config.optim.warmup_steps = 0  # a non-zero first learning rate, so the step moves the parameters
  params_one, metrics_one = one_step_params(config, jax.devices()[:1])
  params_four, metrics_four = one_step_params(config, jax.devices())
  initial = jax.device_get(experiments.init_state(build_model(config.model, 60), optim.build_optimizer(
      config.optim, config.train.steps), config, experiments.make_mesh(jax.devices()[:1])).params)
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(initial)))
  assert moved > 1e-4  # the comparison below is not vacuous
  for one, four in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_four)):
    np.testing.assert_allclose(one, four, atol=1e-5)
  np.testing.assert_allclose(metrics_one["loss_sum"], metrics_four["loss_sum"], rtol=1e-6)
  np.testing.assert_allclose(metrics_one["grad_norm"], metrics_four["grad_norm"], rtol=1e-5)


def test_training_lowers_the_loss_and_writes_metrics(tiny_corpus, cache_dir, tmp_path, capsys):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 30, "train.eval_every": 30,
                                                   "train.log_every": 10})
  summary = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  train_losses = [record["loss"] for record in records if record["kind"] == "train"]
  # Without a progress bar (a log file), each log interval is one plain line with its loss.
  printed = re.findall(r"step (\d+): train loss ([\d.]+)", capsys.readouterr().out)
  assert [int(step) for step, _ in printed] == [10, 20, 30]
  np.testing.assert_allclose([float(loss) for _, loss in printed], train_losses, atol=1e-4)
  assert train_losses[-1] < train_losses[0] - 0.25
  assert train_losses[-1] < np.log(60) - 1.0  # well below a uniform guess over the 60 words
  # Wall time in training steps (the x axis of quality-against-time plots) only grows, and
  # the validation record carries the same clock.
  seconds = [record["training_seconds"] for record in records if record["kind"] == "train"]
  assert seconds[0] > 0 and all(later >= earlier for earlier, later in zip(seconds, seconds[1:]))
  valid = [record for record in records if record["kind"] == "valid"]
  assert valid[-1]["training_seconds"] >= seconds[-1]
  assert summary["perplexity"] < 60  # a uniform guess over the 60-word vocabulary scores 60
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))


def test_a_workdir_of_another_model_is_refused_and_left_untouched(tiny_corpus, cache_dir, tmp_path):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 3})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  saved_config = (tmp_path / "config.json").read_text()
  wider = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 6, "model.width": 48})
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match="model.width: saved 32, requested 48"):
    loop.train_and_evaluate(wider, str(tmp_path), progress=False)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before
  assert (tmp_path / "config.json").read_text() == saved_config


def test_checkpoints_without_a_config_are_refused(tmp_path):
  (tmp_path / "checkpoints" / "3").mkdir(parents=True)
  from configs import quickstart
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match="no config.json"):
    checkpoint.check_workdir(str(tmp_path), quickstart.get_config("smoke"))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_corpus, cache_dir, tmp_path):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 3})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  # Resume with an infinite learning rate: the first update makes every parameter NaN.
  broken = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 9, "optim.lr": float("inf"),
                                                   "train.log_every": 1})
  # Step 4's parameters are NaN: known at the step itself (their norm), so the run stops there.
  with pytest.raises(loop.NonFiniteLossError, match=r"between steps 4 and 4.*last finite checkpoint is step 3"):
    loop.train_and_evaluate(broken, str(tmp_path), progress=False,
                             allow_change=("optim.lr", "train.steps"))
  assert sorted(int(name) for name in os.listdir(tmp_path / "checkpoints")) == [3]


def test_unknown_config_keys_and_variants_fail():
  from configs import quickstart
  config = quickstart.get_config("smoke")
  with pytest.raises(AttributeError):
    config.optim.learning_rate = 1e-3  # the key is optim.lr
  with pytest.raises(ValueError, match="unknown variant 'smok'"):
    quickstart.get_config("smok")


def _all_reduce_results(config, devices, vocab_size=60):
  """The result types of every all-reduce in the compiled train step on `devices`."""
  mesh, state, step = step_on(config, devices, vocab_size)
  rows = config.train.batch_size
  batch = {"inputs": np.zeros((rows, config.train.seq_len), np.int32),
           "targets": np.zeros((rows, config.train.seq_len), np.int32),
           "weights": np.ones((rows, config.train.seq_len), np.float32), "reset": np.ones((rows,), bool)}
  text = step.lower(state, experiments.global_batch(mesh, batch)).compile().as_text()
  return [line.split("=", 1)[1].split("all-reduce(")[0] for line in text.splitlines() if " all-reduce(" in line]


def test_one_device_does_not_all_reduce_the_gradients(tiny_corpus, cache_dir):
  # XLA:CPU runs a one-device all-reduce as a copy of every gradient; averaging over one
  # device is the identity, so the one-device step must not have it. Only scalar sums
  # (the metrics) may remain.
  config = smoke_config(tiny_corpus, cache_dir)
  non_scalar = lambda results: [result for result in results if re.search(r"\[\d", result)]
  assert non_scalar(_all_reduce_results(config, jax.devices()))  # four devices average gradients
  assert not non_scalar(_all_reduce_results(config, jax.devices()[:1]))


def test_running_a_finished_run_again_reports_its_validation(tiny_corpus, cache_dir, tmp_path):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 3})
  first = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  again = loop.train_and_evaluate(config, str(tmp_path), progress=False)  # used to fail on a closed file
  assert again["loss"] == pytest.approx(first["loss"], rel=1e-6)


def test_eval_every_zero_validates_only_at_the_end(tiny_corpus, cache_dir, tmp_path):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 4, "train.eval_every": 0, "train.log_every": 0})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [(record["kind"], record["step"]) for record in records] == [("train", 4), ("valid", 4)]


def test_a_workdir_describes_its_run_and_reopening_it_builds_no_task(tiny_corpus, cache_dir, tmp_path):
  """run.json says the task and the metric that ranks its checkpoints, so a fine-tuning start
  from "<workdir>:best" (or a report) reads them instead of importing every task."""
  import subprocess
  import sys
  from conftest import REPO_ROOT
  from jaxlm import errors
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(smoke_config(tiny_corpus, cache_dir), workdir, progress=False)
  assert checkpoint.load_run(workdir) == {"task": "causal_lm", "best_metric": "perplexity", "best_mode": "min"}
  program = ("import sys; from jaxlm.starts import pretrained_checkpoint; "
             f"encoder = pretrained_checkpoint.restore_encoder({workdir + ':best'!r}); "
             "print(sorted(encoder), 'jaxlm.tasks' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO_ROOT}, timeout=120)
  assert result.stdout.strip() == "['body', 'input_layer'] False", result.stderr[-2000:]
  os.remove(os.path.join(workdir, checkpoint.RUN_FILE))
  with pytest.raises(errors.WorkdirError, match=r"run.json not found: .* does not say which validation metric"):
    checkpoint.load_run(workdir)


class _Task:
  best_metric, best_mode = "accuracy", "max"


def _stops_at(values, patience, workdir, **settings):
  """The 1-based validation at which EarlyStopping says stop, or None."""
  stopping = loop.EarlyStopping(_Task, patience, str(workdir), 0, **settings)
  for index, value in enumerate(values, 1):
    if stopping.update(value):
      return index
  return None


def test_early_stopping_counts_validations_since_the_best(tmp_path):
  values = [0.50, 0.60, 0.55, 0.58, 0.61, 0.59, 0.60]
  assert _stops_at(values, 2, tmp_path) == 4  # best 0.60 at 2; 3 and 4 are worse
  assert _stops_at(values, 3, tmp_path) is None  # 0.61 at 5 resets the count
  assert _stops_at(values, 0, tmp_path) is None  # 0: never
  # A resumed run rebuilds the count from metrics.jsonl's validations up to its restored step.
  with open(tmp_path / "metrics.jsonl", "w", encoding="utf-8") as handle:
    for step, value in enumerate(values[:3], 1):
      handle.write(json.dumps({"step": step, "kind": "valid", "accuracy": value}) + "\n")
  resumed = loop.EarlyStopping(_Task, 2, str(tmp_path), 3)
  assert resumed.update(values[3])  # the 4th validation stops it, as in the uninterrupted run


def test_early_stopping_can_follow_a_moving_mean_of_validations(tmp_path):
  # A rising metric with one noisy dip: each validation's own value stops at the 4th (0.52 and
  # 0.56 are below 0.60); the 3-validation mean (0.50, 0.55, 0.54, 0.56, 0.553, 0.577, 0.597)
  # is beaten at 4, 6 and 7, so the run goes on.
  values = [0.50, 0.60, 0.52, 0.56, 0.58, 0.59, 0.62]
  assert _stops_at(values, 2, tmp_path) == 4
  assert _stops_at(values, 2, tmp_path, window=3) is None
  # A falling mean stops it: (0.55, 0.54, 0.53) after the best 0.56 mean at 4.
  assert _stops_at(values + [0.45, 0.40, 0.35], 2, tmp_path, window=3) == 9
  # A resume rebuilds the window from metrics.jsonl and stops where the uninterrupted run does.
  values = values + [0.45, 0.40, 0.35]
  with open(tmp_path / "metrics.jsonl", "w", encoding="utf-8") as handle:
    for step, value in enumerate(values[:6], 1):
      handle.write(json.dumps({"step": step, "kind": "valid", "accuracy": value}) + "\n")
  resumed = loop.EarlyStopping(_Task, 2, str(tmp_path), 6, window=3)
  assert [resumed.update(value) for value in values[6:9]] == [False, False, True]
  with pytest.raises(errors.ConfigError, match="train.patience_window=0"):
    loop.EarlyStopping(_Task, 2, str(tmp_path), 0, window=0)


def _saved_steps(workdir) -> list[int]:
  return checkpoint.kept_steps(str(workdir))


def test_every_validation_saves_a_checkpoint_by_default(tiny_corpus, cache_dir, tmp_path):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 6, "train.eval_every": 1,
                                                    "train.keep_checkpoints": 100})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert _saved_steps(tmp_path) == [1, 2, 3, 4, 5, 6]


def test_checkpoint_schedule_saves_the_best_so_far_the_end_and_spaced_resume_points(tmp_path):
  schedule = loop.CheckpointSchedule(_Task, 3, str(tmp_path), 0)  # accuracy: higher is better
  values = [0.50, 0.60, 0.55, 0.58, 0.60, 0.59, 0.57, 0.58]
  saved = [step for step, value in enumerate(values, 1)
           if schedule.saves(step, value, final=step == len(values), off_schedule=False)]
  # 1, 2 best so far; 5 ties the best (the later of equals is the best, as Orbax ranks them);
  # 8 is 3 steps after 5 and the last; 3, 4, 6, 7 are worse and fewer than 3 steps after a save.
  assert saved == [1, 2, 5, 8]
  every = loop.CheckpointSchedule(_Task, 0, str(tmp_path), 0)
  assert all(every.saves(step, value, final=False, off_schedule=False) for step, value in enumerate(values, 1))
  # An off-schedule stop saves but is never the best; a resume reads the best so far back.
  with open(tmp_path / "metrics.jsonl", "w", encoding="utf-8") as handle:
    for step, value in enumerate(values[:2], 1):
      handle.write(json.dumps({"step": step, "kind": "valid", "accuracy": value}) + "\n")
    handle.write(json.dumps({"step": 3, "kind": "valid", "accuracy": 0.99, "interrupted": True}) + "\n")
  resumed = loop.CheckpointSchedule(_Task, 3, str(tmp_path), 3)
  assert not resumed.saves(4, 0.58, final=False, off_schedule=False)
  assert resumed.saves(5, 0.60, final=False, off_schedule=False)
  with pytest.raises(errors.ConfigError, match="train.checkpoint_every=-1"):
    loop.CheckpointSchedule(_Task, -1, str(tmp_path), 0)


def test_spaced_checkpoints_keep_the_best_and_a_lost_save_repeats_the_run_exactly(tiny_corpus, cache_dir, tmp_path):
  # A rate high enough that validation perplexity rises after the first step (19.1, 22.3, 20.8, ...).
  settings = {"train.steps": 6, "train.eval_every": 1, "train.keep_checkpoints": 100, "train.log_every": 1,
              "optim.lr": 0.05, "optim.warmup_steps": 0, "optim.schedule": "constant"}
  every = tmp_path / "every"
  loop.train_and_evaluate(smoke_config(tiny_corpus, cache_dir, **settings), str(every), progress=False)
  spaced = tmp_path / "spaced"
  config = smoke_config(tiny_corpus, cache_dir, **settings, **{"train.checkpoint_every": 100})
  last = loop.train_and_evaluate(config, str(spaced), progress=False)
  records = loop.read_records(str(spaced))
  perplexities = {record["step"]: record["perplexity"] for record in records if record["kind"] == "valid"}
  best_so_far = [step for step in perplexities if perplexities[step] <= min(perplexities[s] for s in range(1, step + 1))]
  assert _saved_steps(spaced) == sorted(set(best_so_far) | {6})
  assert len(_saved_steps(spaced)) < 6, "the smoke run's perplexity should rise once, or this tests nothing"
  best = lambda workdir: checkpoint.best_step(checkpoint.manager(str(workdir), 100, best_metric="perplexity",
                                                                  best_mode="min", read_only=True))
  assert best(spaced) == best(every)
  # A run that lost its saves after the first resumes from that one and ends as the whole run did.
  import shutil
  first = _saved_steps(spaced)[0]
  for step in _saved_steps(spaced)[1:]:
    shutil.rmtree(os.path.join(spaced, checkpoint.CHECKPOINT_DIR, str(step)))
  again = loop.train_and_evaluate(config, str(spaced), progress=False)
  scores = lambda records: [(record["step"], record["loss"], record["perplexity"]) for record in records
                            if record["kind"] == "valid"]
  assert first < 6 and again["perplexity"] == last["perplexity"]
  assert scores(loop.read_records(str(spaced))) == scores(records)


def test_keep_steps_are_saved_and_kept_beside_the_latest_and_the_best(tiny_corpus, cache_dir, tmp_path):
  # Validations every step, a save only for the best and every 100 steps, two latest kept: steps 2
  # and 3 survive only because keep_steps names them.
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 8, "train.eval_every": 1,
                                                    "train.keep_checkpoints": 1, "train.checkpoint_every": 100,
                                                    "train.keep_steps": (2, 3)})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  saved = _saved_steps(tmp_path)
  assert {2, 3, 8} <= set(saved)
  best = checkpoint.best_step(checkpoint.manager(str(tmp_path), 1, best_metric="perplexity", best_mode="min",
                                                 read_only=True))
  assert set(saved) == {2, 3, 8, best}


def test_keep_steps_off_the_validation_schedule_are_refused_before_anything_is_written(tiny_corpus, cache_dir,
                                                                                         tmp_path):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 8, "train.eval_every": 4,
                                                    "train.keep_steps": (4, 6)})
  with pytest.raises(errors.ConfigError, match=r"train.keep_steps=\(4, 6\): \[6\] are not validation steps"):
    loop.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  assert not os.path.exists(tmp_path / "run")


def test_validations_record_cpu_seconds_that_continue_over_a_resume(tiny_corpus, cache_dir, tmp_path):
  settings = {"train.eval_every": 2, "train.log_every": 2}
  loop.train_and_evaluate(smoke_config(tiny_corpus, cache_dir, **settings, **{"train.steps": 4}), str(tmp_path),
                          progress=False)
  first = [record["cpu_seconds"] for record in loop.read_records(str(tmp_path)) if record["kind"] == "valid"]
  assert 0 < first[0] < first[1]
  loop.train_and_evaluate(smoke_config(tiny_corpus, cache_dir, **settings, **{"train.steps": 6}), str(tmp_path),
                          progress=False, allow_change=("train.steps",))
  records = [record for record in loop.read_records(str(tmp_path)) if record["kind"] == "valid"]
  # The resumed process's own CPU time is added to the restored step's record, not started again.
  assert [record["step"] for record in records] == [2, 4, 6]
  assert records[2]["cpu_seconds"] > records[1]["cpu_seconds"] == first[1]
