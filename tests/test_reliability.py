"""A run that cannot lie. Non-finite states, signals, workdir identity, damaged
checkpoints, and the one-line messages around them."""

import json
import os

import jax
import numpy as np
import optax
import pytest

from conftest import smoke_config, snapshot
from jaxlm import checkpoint
from jaxlm.training import evaluation, experiments, loop, steps
from jaxlm.tasks import causal_lm


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as handle:
    return [json.loads(line) for line in handle]


def kept_steps(workdir):
  return sorted(int(name) for name in os.listdir(os.path.join(workdir, "checkpoints")) if name.isdigit())


# ----------------------------------------------------------------------------
# 1. Never save or rank a non-finite state.


def test_a_nan_state_is_never_saved_and_the_message_names_the_last_finite_checkpoint(tiny_corpus, cache_dir,
                                                                                   tmp_path):
  config = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 3})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  # An infinite learning rate makes every parameter NaN at step 4, which validates (and used
  # to save) before the log at step 6 could see it.
  broken = smoke_config(tiny_corpus, cache_dir, **{"train.steps": 9, "optim.lr": float("inf"),
                                                   "train.eval_every": 1, "train.log_every": 3})
  config_json = open(os.path.join(tmp_path, "config.json")).read()
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"between steps 4 and 4.*last finite checkpoint is step 3 .*not saved"):
    loop.train_and_evaluate(broken, str(tmp_path), progress=False,
                             allow_change=("optim.lr", "train.steps"))
  assert kept_steps(tmp_path) == [3]
  assert open(os.path.join(tmp_path, "config.json")).read() == config_json  # a failed run rewrites nothing


def test_a_nan_validation_metric_is_never_ranked_best(tmp_path):
  manager = checkpoint.manager(str(tmp_path), 1)
  state = {"w": np.zeros(3, np.float32)}
  for step, value in [(1, 5.0), (2, float("nan")), (3, float("inf")), (4, float("nan"))]:
    checkpoint.save(manager, step, state, {"perplexity": value})
  assert checkpoint.best_step(manager) == 1
  assert kept_steps(tmp_path) == [1, 4]  # the best by a finite metric, and the latest


def test_a_step_saved_off_schedule_on_a_stop_is_never_ranked_best(tmp_path):
  """Seen: an SST-2 grid cell SIGTERM'd between validations kept that step as its best, one the
  uninterrupted run never validated, so its score depended on when the grid was stopped."""
  manager = checkpoint.manager(str(tmp_path), 1, best_metric="accuracy", best_mode="max")
  state = {"w": np.zeros(3, np.float32)}
  for step, value, off_schedule in [(3, 0.5, False), (4, 0.9, True), (6, 0.6, False), (7, 0.95, True)]:
    checkpoint.save(manager, step, state, {"accuracy": value}, off_schedule=off_schedule)
  assert checkpoint.best_step(manager) == 6
  assert kept_steps(tmp_path) == [6, 7]  # the best scheduled step, and the latest to resume from
  # Alone (a run stopped before its first validation), it is still the one there is.
  alone = checkpoint.manager(str(tmp_path / "alone"), 1)
  checkpoint.save(alone, 2, state, {"perplexity": 9.0}, off_schedule=True)
  assert checkpoint.best_step(alone) == 2


def poison_train_steps(monkeypatch, bad_steps):
  """Makes CausalLM's training batches of `bad_steps` (0-based batch indices) give a NaN loss."""
  original = causal_lm.CausalLM.train_batch

  def train_batch(self, step, **kwargs):
    batch = original(self, step, **kwargs)
    if step in bad_steps:
      batch = dict(batch, weights=batch["weights"].copy())
      batch["weights"][0, 0] = np.nan
    return batch

  monkeypatch.setattr(causal_lm.CausalLM, "train_batch", train_batch)


def test_a_skipped_step_changes_nothing_and_is_counted(tiny_corpus, cache_dir):
  config = smoke_config(tiny_corpus, cache_dir)
  experiment = experiments.build_experiment(config)
  state = experiments.init_experiment_state(experiment)
  before = jax.device_get((state.params, state.opt_state))
  step = steps.make_train_step(experiment.model, experiment.task.loss, experiment.optimizer, experiment.mesh,
                               state, config.seed, skip_nonfinite=True)
  batch = experiment.task.train_batch(0, seed=0, batch_size=config.train.batch_size)
  batch["weights"][0, 0] = np.nan
  state, metrics = step(state, experiments.global_batch(experiment.mesh, batch))
  metrics = jax.device_get(metrics)
  assert metrics["nonfinite_steps"] == 1.0 and metrics["loss_sum"] == 0.0 and int(state.step) == 1
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get((state.params, state.opt_state)))):
    np.testing.assert_array_equal(old, new)


def test_max_bad_steps_skips_that_many_then_stops_with_the_range(tiny_corpus, cache_dir, tmp_path, monkeypatch):
  poison_train_steps(monkeypatch, {2, 4})  # steps 3 and 5
  skipping = smoke_config(tiny_corpus, cache_dir, **{"train.max_bad_steps": 2})
  summary = loop.train_and_evaluate(skipping, str(tmp_path / "skip"), progress=False)
  assert np.isfinite(summary["loss"])
  assert sum(record.get("skipped_steps", 0) for record in records(tmp_path / "skip")) == 2
  strict = smoke_config(tiny_corpus, cache_dir, **{"train.max_bad_steps": 1})
  with pytest.raises(loop.NonFiniteLossError, match=r"2 steps had .*max_bad_steps=1.*between steps 5 and 6"):
    loop.train_and_evaluate(strict, str(tmp_path / "strict"), progress=False)
  assert kept_steps(tmp_path / "strict") == [3]
  with pytest.raises(loop.NonFiniteLossError, match=r"between steps 3 and 3.*no checkpoint was saved"):
    loop.train_and_evaluate(smoke_config(tiny_corpus, cache_dir), str(tmp_path / "stop"), progress=False)


# ----------------------------------------------------------------------------
# 3. The workdir records what makes the run the run.


@pytest.fixture(scope="module")
def own_corpus(tmp_path_factory):
  """A private copy of the tiny corpus (tests here edit it)."""
  from conftest import write_tiny_corpus
  return write_tiny_corpus(str(tmp_path_factory.mktemp("own_corpus")))


@pytest.fixture
def trained(own_corpus, cache_dir, tmp_path):
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(smoke_config(own_corpus, cache_dir, **{"train.steps": 3}), workdir, progress=False)
  return workdir


@pytest.mark.parametrize("key,value", [("seed", 1), ("train.batch_size", 4), ("optim.name", "sgd"),
                                       ("data.batching", "stream"), ("train.steps", 9)])
def test_a_resume_of_another_run_is_refused_and_writes_nothing(own_corpus, cache_dir, trained, key, value):
  before = snapshot(trained)
  other = smoke_config(own_corpus, cache_dir, **{"train.steps": 3, key: value})
  if key == "train.steps":
    other.train.steps = value
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match=rf"{key}: saved .*--allow_change={key}\."):
    loop.train_and_evaluate(other, trained, progress=False)
  assert snapshot(trained) == before


def test_an_allowed_change_goes_on_and_is_logged(own_corpus, cache_dir, trained):
  longer = smoke_config(own_corpus, cache_dir, **{"train.steps": 6})
  loop.train_and_evaluate(longer, trained, progress=False, allow_change=("train.steps",))
  changes = [record for record in records(trained) if record["kind"] == "config_change"]
  assert [(record["step"], record["changes"]) for record in changes] == [(3, ["train.steps: saved 3, requested 6"])]
  assert json.load(open(os.path.join(trained, "config.json")))["train"]["steps"] == 6


def saved_arrays(workdir, step):
  """The parameters and step of checkpoint `step`, read without a target (numpy leaves)."""
  import orbax.checkpoint as ocp
  tree = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "default"))
  return {"step": int(tree["step"]), "params": jax.tree.map(np.asarray, tree["params"])}


@pytest.mark.parametrize("key,value", [("optim.clip_norm", 0.0), ("optim.name", "sgd")])
def test_an_allowed_optimiser_change_keeps_every_checkpoint_and_restarts_the_optimiser_state(
    own_corpus, cache_dir, trained, key, value):
  """Such a change alters the optimiser state's tree, so no saved state fits the new target.
  That is not damage: the parameters restore, the optimiser state starts anew, and the saved
  checkpoints stay where they are."""
  at_three = saved_arrays(trained, 3)
  changed = smoke_config(own_corpus, cache_dir, **{"train.steps": 6, key: value})
  loop.train_and_evaluate(changed, trained, progress=False, allow_change=(key, "train.steps"))
  assert not os.path.exists(os.path.join(trained, "damaged_checkpoints"))
  assert kept_steps(trained) == [3, 6]
  assert saved_arrays(trained, 3)["step"] == 3  # untouched, and the resume started from it
  jax.tree.map(np.testing.assert_array_equal, saved_arrays(trained, 3)["params"], at_three["params"])
  [change] = [record for record in records(trained) if record["kind"] == "config_change"]
  assert change["step"] == 3
  assert any(line.startswith("optimiser state restarted at step 3") for line in change["changes"]), change
  assert [record["step"] for record in records(trained) if record["kind"] == "train"][-1] == 6
  assert json.load(open(os.path.join(trained, "config.json")))[key.split(".")[0]][key.split(".")[1]] == value
  # A step saved before the change still scores: evaluation reads no optimiser state.
  from jaxlm.training import evaluate
  assert evaluate.evaluate_workdir(trained, step=3, splits=("valid",))[0]["step"] == 3


def test_an_optimiser_state_that_does_not_fit_without_an_allowed_change_is_refused_and_writes_nothing(
    own_corpus, cache_dir, trained, monkeypatch):
  """The same run whose optimiser code now builds another state tree (no config change to blame):
  refused before anything is touched, never taken for damage."""
  from jaxlm.training import optim
  original = optim.build_optimizer
  monkeypatch.setattr(optim, "build_optimizer",
                      lambda *args, **kwargs: optax.chain(optax.clip_by_global_norm(1.0), original(*args, **kwargs)))
  before = snapshot(trained)
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match=r"optimiser state .*opt_state"):
    loop.train_and_evaluate(smoke_config(own_corpus, cache_dir, **{"train.steps": 3}), trained, progress=False)
  assert snapshot(trained) == before


def test_an_allowed_model_change_that_alters_the_parameters_is_refused_and_writes_nothing(
    own_corpus, cache_dir, trained):
  before = snapshot(trained)
  wider = smoke_config(own_corpus, cache_dir, **{"train.steps": 3, "model.width": 48})
  with pytest.raises(checkpoint.IncompatibleWorkdirError,
                     match=r"step 3 .*parameters do not fit the model .*params/.*saved \(.*built \("):
    loop.train_and_evaluate(wider, trained, progress=False, allow_change=("model",))
  assert snapshot(trained) == before


def test_a_workdir_without_what_every_run_saves_is_refused_naming_it(own_corpus, cache_dir, trained):
  """A config key, the task section, data_fingerprint.txt or vocabulary.txt that every run writes,
  missing (a workdir from another jaxlm, or edited by hand): the resume or the evaluation names
  it in one line and changes nothing."""
  from jaxlm import errors
  from jaxlm.training import evaluate
  resume = smoke_config(own_corpus, cache_dir, **{"train.steps": 3})
  path = os.path.join(trained, "config.json")
  original = open(path).read()
  saved = json.loads(original)
  del saved["data"]["tokenizer"]
  open(path, "w").write(json.dumps(saved))
  before = snapshot(trained)
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match=r"data.tokenizer: saved '<absent>', requested 'word'"):
    loop.train_and_evaluate(resume, trained, progress=False)
  assert snapshot(trained) == before
  del saved["task"]
  open(path, "w").write(json.dumps(saved))
  with pytest.raises(errors.WorkdirError, match=r"config.json has no 'task' section"):
    evaluate.evaluate_workdir(trained, splits=("valid",))
  open(path, "w").write(original)
  before = snapshot(trained)

  fingerprint = os.path.join(trained, checkpoint.DATA_FINGERPRINT_FILE)
  os.rename(fingerprint, fingerprint + ".moved")
  with pytest.raises(checkpoint.IncompatibleWorkdirError, match=r"data.fingerprint: saved '<no data_fingerprint.txt>'"):
    loop.train_and_evaluate(resume, trained, progress=False)
  with pytest.raises(evaluate.DataChangedError, match=r"no data_fingerprint.txt"):
    evaluate.evaluate_workdir(trained, splits=("valid",))
  os.rename(fingerprint + ".moved", fingerprint)
  vocabulary = os.path.join(trained, checkpoint.VOCABULARY_FILE)
  os.rename(vocabulary, vocabulary + ".moved")
  with pytest.raises(errors.MissingFileError, match=r"vocabulary.txt not found"):
    evaluate.evaluate_workdir(trained, splits=("valid",))
  os.rename(vocabulary + ".moved", vocabulary)
  assert snapshot(trained) == before


def test_changed_data_is_refused_for_training_and_evaluation_and_scored_with_the_saved_vocabulary(
    own_corpus, cache_dir, trained):
  from jaxlm.training import evaluate
  original = evaluate.evaluate_workdir(trained, splits=("test",))[0]
  before = snapshot(trained)
  train_file = os.path.join(own_corpus, "train.txt")
  text = open(train_file).read()
  try:
    with open(train_file, "a") as handle:  # a new, most frequent word: the rebuilt ids all move
      handle.write(" zzz" * 5000 + " \n")
    resume = smoke_config(own_corpus, cache_dir, **{"train.steps": 6})
    with pytest.raises(checkpoint.IncompatibleWorkdirError, match=r"vocabulary: (\d+) words saved, \d+ built.*"
                       r"data.fingerprint: saved"):
      loop.train_and_evaluate(resume, trained, progress=False, allow_change=("train.steps",))
    assert snapshot(trained) == before
    with pytest.raises(evaluate.DataChangedError, match="--allow_data_change"):
      evaluate.evaluate_workdir(trained, splits=("test",))
    changed = evaluate.evaluate_workdir(trained, splits=("test",), allow_data_change=True)[0]
    assert changed["loss"] == pytest.approx(original["loss"], rel=1e-6)  # the test split did not change
  finally:
    open(train_file, "w").write(text)


# ----------------------------------------------------------------------------
# 4. Damaged checkpoints.


def truncate_largest_file(step_directory):
  paths = [os.path.join(root, name) for root, _, names in os.walk(step_directory) for name in names]
  largest = max(paths, key=os.path.getsize)
  with open(largest, "r+b") as handle:
    handle.truncate(1000)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(own_corpus, cache_dir, tmp_path, capsys):
  from jaxlm.training import evaluate
  workdir = str(tmp_path / "run")
  config = smoke_config(own_corpus, cache_dir)  # checkpoints 3 and 6
  loop.train_and_evaluate(config, workdir, progress=False)
  truncate_largest_file(os.path.join(workdir, "checkpoints", "6"))
  capsys.readouterr()
  assert evaluate.evaluate_workdir(workdir, splits=("valid",))[0]["step"] == 3
  warnings = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]
  assert len(warnings) == 1 and "step 6" in warnings[0] and "restoring step 3" in warnings[0]

  loop.train_and_evaluate(config, workdir, progress=False)  # resumes from 3, moves 6 aside
  assert kept_steps(workdir) == [3, 6] and len(os.listdir(os.path.join(workdir, "damaged_checkpoints"))) == 1
  assert evaluate.evaluate_workdir(workdir, splits=("valid",))[0]["step"] == 6

  os.remove(os.path.join(workdir, "checkpoints", "6", "default", "_METADATA"))
  truncate_largest_file(os.path.join(workdir, "checkpoints", "3"))
  with pytest.raises(checkpoint.DamagedCheckpointError, match=r"step 6: .*_METADATA is missing; step 3: "):
    evaluate.evaluate_workdir(workdir, splits=("valid",))


def test_a_damaged_init_checkpoint_falls_back_to_an_earlier_step_and_names_the_key(
    own_corpus, cache_dir, tmp_path, capsys):
  from jaxlm.starts import pretrained_checkpoint
  from jaxlm import errors
  workdir = str(tmp_path / "pre_trained")
  loop.train_and_evaluate(smoke_config(own_corpus, cache_dir), workdir, progress=False)  # steps 3 and 6
  at_three = saved_arrays(workdir, 3)["params"]
  truncate_largest_file(os.path.join(workdir, "checkpoints", "6"))
  capsys.readouterr()
  restored = pretrained_checkpoint.restore_encoder(workdir)
  jax.tree.map(np.testing.assert_array_equal, restored["body"], at_three["body"])
  [warning] = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]
  assert warning.startswith(f"warning: config init.checkpoint={workdir!r}: checkpoint step 6 ")
  assert warning.endswith("using step 3 instead")
  with pytest.raises(checkpoint.DamagedCheckpointError, match=r"init.checkpoint=.*no checkpoint of 6 in"):
    pretrained_checkpoint.restore_encoder(f"{workdir}:6")  # a named step: no other will do
  truncate_largest_file(os.path.join(workdir, "checkpoints", "3"))
  with pytest.raises(errors.UserError, match=r"config init.checkpoint=.*no checkpoint of 6, 3 .*step 6: .*step 3: "):
    pretrained_checkpoint.restore_encoder(workdir)


# ----------------------------------------------------------------------------
# 6. Smaller: duplicate records, unwritable checkpoints, a full disk.


def test_a_resume_does_not_duplicate_metrics_records(own_corpus, cache_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = smoke_config(own_corpus, cache_dir, **{"train.log_every": 1})
  loop.train_and_evaluate(config, workdir, progress=False)
  # As if killed after logging steps 4-6 but before checkpoint 6 was written.
  import shutil
  shutil.rmtree(os.path.join(workdir, "checkpoints", "6"))
  loop.train_and_evaluate(config, workdir, progress=False)
  loop.train_and_evaluate(config, workdir, progress=False)  # a finished run started again logs nothing new
  logged = [(record["kind"], record["step"]) for record in records(workdir)]
  assert sorted(logged) == sorted(set(logged)) and ("train", 6) in logged and ("valid", 6) in logged


def test_unwritable_checkpoints_fail_before_training(own_corpus, cache_dir, tmp_path, monkeypatch):
  import tempfile
  def refuse(*args, dir=None, **kwargs):
    raise PermissionError(13, "Permission denied", dir)
  monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)  # as for a non-root user on a read-only folder
  workdir = str(tmp_path / "run")
  with pytest.raises(checkpoint.CheckpointWriteError, match=r"cannot write checkpoints to .*checkpoints: "
                     r"Permission denied\. Make it writable"):
    loop.train_and_evaluate(smoke_config(own_corpus, cache_dir), workdir, progress=False)
  assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))  # no step ran


def test_a_full_disk_is_reported_in_one_line(own_corpus, cache_dir, tmp_path, monkeypatch):
  import errno
  import orbax.checkpoint as ocp

  def full(self, step, *args, **kwargs):
    try:
      raise OSError(errno.ENOSPC, "No space left on device", f"{self.directory}/{step}/default/d/0a1b")
    except OSError as cause:
      raise ValueError("Error writing ... (a long TensorStore spec)") from cause

  monkeypatch.setattr(ocp.CheckpointManager, "save", full)
  with pytest.raises(checkpoint.CheckpointWriteError) as raised:
    loop.train_and_evaluate(smoke_config(own_corpus, cache_dir), str(tmp_path / "run"), progress=False)
  message = str(raised.value)
  assert "\n" not in message and "step 3" in message and "No space left on device" in message
  assert "/3/default/d/0a1b" in message


# ----------------------------------------------------------------------------
# 5. Evaluation rows are exactly the requested ones, on any device count.


def test_batch_size_one_on_four_devices_scores_exactly_like_one_device(tiny_corpus, cache_dir):
  from configs import wt2_lstm
  config = wt2_lstm.get_config("smoke")
  config.data.path, config.data.cache_dir = tiny_corpus, cache_dir
  scores = []
  for devices in (jax.devices()[:1], jax.devices()):
    experiment = experiments.build_experiment(config)
    experiment.mesh = experiments.make_mesh(devices)
    state = experiments.init_experiment_state(experiment)
    evaluate_split = evaluation.make_evaluator(experiment)
    # AWD-LSTM's convention: one row, the whole split as one stream with state carried.
    scores.append(evaluate_split(state, "valid", batch_size=1))
  one, four = scores
  assert one["tokens"] == four["tokens"]  # padding rows score nothing
  assert four["loss"] == pytest.approx(one["loss"], rel=1e-6)
