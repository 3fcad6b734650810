"""End-to-end through the launchers, as a user runs them (slow: subprocesses)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
from jaxlm import checkpoint

pytestmark = pytest.mark.slow


def launch(script, *args, devices=4, wait=True):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  command = [sys.executable, os.path.join(REPO_ROOT, "launch", script), *args]
  if not wait:
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def train_args(workdir, corpus, cache):
  return [f"--config={REPO_ROOT}/configs/quickstart.py:smoke", f"--workdir={workdir}",
          f"--config.data.path={corpus}", f"--config.data.cache_dir={cache}", "--config.train.steps=24",
          "--config.train.log_every=1", "--config.train.eval_every=3", "--config.train.keep_checkpoints=10"]


def train_losses(workdir):
  losses = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as handle:
    for line in handle:
      record = json.loads(line)
      if record["kind"] == "train":
        losses[record["step"]] = record["loss"]  # a resumed run re-logs steps after its checkpoint
  return losses


@pytest.fixture(scope="module")
def uninterrupted(tiny_corpus, cache_dir, tmp_path_factory):
  """The workdir of the 24-step run that interrupted runs are compared with."""
  whole = str(tmp_path_factory.mktemp("whole"))
  result = launch("train.py", *train_args(whole, tiny_corpus, cache_dir))
  assert result.returncode == 0, result.stdout + result.stderr
  return whole


def start_and_signal(workdir, corpus, cache, signal_number):
  """Starts the 24-step run and sends `signal_number` once checkpoint 6 is written; the process."""
  process = launch("train.py", *train_args(workdir, corpus, cache), wait=False)
  marker = os.path.join(workdir, "checkpoints", "6", "commit_success.txt")
  deadline = time.time() + 240
  while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it could be signalled:\n" + process.stdout.read()
  process.send_signal(signal_number)
  process.wait(timeout=120)
  return process


def test_sigkill_then_resume_repeats_the_uninterrupted_run(tiny_corpus, cache_dir, tmp_path, uninterrupted):
  whole, interrupted = uninterrupted, str(tmp_path / "interrupted")
  start_and_signal(interrupted, tiny_corpus, cache_dir, signal.SIGKILL)
  killed_at = max(int(name) for name in os.listdir(os.path.join(interrupted, "checkpoints")) if name.isdigit())
  assert killed_at < 24

  result = launch("train.py", *train_args(interrupted, tiny_corpus, cache_dir))
  assert result.returncode == 0, result.stdout + result.stderr
  expected, resumed = train_losses(whole), train_losses(interrupted)
  assert sorted(resumed) == sorted(expected) == list(range(1, 25))
  for step in range(killed_at + 1, 25):
    assert resumed[step] == expected[step], f"step {step}: {resumed[step]} != {expected[step]}"

  # A checkpoint written on 4 simulated devices restores on 1 and scores the whole split.
  result = launch("evaluate.py", f"--workdir={interrupted}", "--split=test", devices=1)
  assert result.returncode == 0, result.stdout + result.stderr
  report = json.loads(result.stdout.strip().splitlines()[-1])
  with open(os.path.join(tiny_corpus, "test.txt"), encoding="utf-8") as handle:
    test_tokens = sum(len(line.split()) + 1 for line in handle)
  assert report["step"] == 24 and report["tokens"] == test_tokens - 1  # every target, none dropped
  four = json.loads(launch("evaluate.py", f"--workdir={interrupted}", "--split=test").stdout.splitlines()[-1])
  assert abs(four["loss"] - report["loss"]) < 1e-5


def test_sigterm_saves_the_step_it_finished_and_the_restart_repeats_the_run(tiny_corpus, cache_dir, tmp_path,
                                                                           uninterrupted):
  interrupted = str(tmp_path / "interrupted")
  process = start_and_signal(interrupted, tiny_corpus, cache_dir, signal.SIGTERM)
  output = process.stdout.read()
  assert process.returncode == 128 + signal.SIGTERM, output
  lines = [line for line in output.splitlines() if "SIGTERM" in line]
  assert len(lines) == 1 and "Traceback" not in output, output
  stopped_at = int(lines[0].split("finished step ")[1].split(",")[0])
  assert 6 <= stopped_at < 24 and f"saved checkpoint {stopped_at}" in lines[0]
  steps = [int(name) for name in os.listdir(os.path.join(interrupted, "checkpoints")) if name.isdigit()]
  assert max(steps) == stopped_at  # the step it finished, not the last evaluation's
  if stopped_at % 3:  # off schedule (eval_every=3): saved to resume from, never ranked best
    assert checkpoint.best_step(checkpoint.manager(interrupted, 10, read_only=True)) < stopped_at

  result = launch("train.py", *train_args(interrupted, tiny_corpus, cache_dir))
  assert result.returncode == 0, result.stdout + result.stderr
  expected, resumed = train_losses(uninterrupted), train_losses(interrupted)
  assert sorted(resumed) == sorted(expected) == list(range(1, 25))
  assert all(resumed[step] == expected[step] for step in range(1, 25)), (resumed, expected)
  best = [checkpoint.best_step(checkpoint.manager(workdir, 10, read_only=True)) for workdir in (interrupted,
                                                                                                uninterrupted)]
  assert best[0] == best[1]


def test_misspelled_config_key_fails_at_start_up(tmp_path):
  result = launch("train.py", f"--config={REPO_ROOT}/configs/quickstart.py:smoke", f"--workdir={tmp_path}",
                  "--config.optim.learning_rate=0.1")
  assert result.returncode != 0
  # One line naming the flag and the close match, not absl's 53-line traceback.
  assert result.stderr.strip().splitlines() == [
      "launch/train.py: --config.optim.learning_rate: the config has no key 'learning_rate' in optim; did you "
      "mean 'lr'? (keys there: b1, b2, clip_norm, embedding_updates, encoder_lr_multiplier, eps, final_lr_fraction, "
      "freeze_encoder_steps, lr, momentum, name, schedule, warmup_steps, weight_decay)"]
  assert not os.path.exists(tmp_path / "checkpoints")


def test_launchers_reject_bad_arguments_in_one_clear_line(tmp_path):
  fasttext = launch("fasttext.py", f"--config={REPO_ROOT}/configs/quickstart.py:smoke", f"--output={tmp_path}/v.bin")
  assert fasttext.returncode != 0 and "no `fasttext` section" in fasttext.stderr
  assert "Traceback" not in fasttext.stderr
  benchmark = launch("benchmark.py", f"--config={REPO_ROOT}/configs/quickstart.py:smoke", "--steps=0")
  assert benchmark.returncode != 0 and "--steps=0" in benchmark.stderr and "Traceback" not in benchmark.stderr
