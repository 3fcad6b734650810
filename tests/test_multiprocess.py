"""Several processes, one run: jax.distributed over loopback on this machine (gloo collectives).

The subprocess tests start N copies of launch/train.py (or of a script under tests/ that calls the
library as it does) with --coordinator_address=127.0.0.1:PORT, each with its own simulated CPU
devices, as hosts of a cluster would run. Dropout is off in the smoke config (quickstart's
transformer has none), so the same global batch gives the same losses on any number of
processes and devices, up to float summation order.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, smoke_config
from jaxlm import distributed, tasks
from jaxlm.training import loop

# One run, as flags for launch/train.py and as dotted keys for the in-process reference.
RUN = {"train.steps": 6, "train.log_every": 1, "train.eval_every": 2, "train.keep_checkpoints": 3,
       "train.eval_tokens": 0}


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
  """A persistent compilation cache shared by this module's subprocesses: a program of one device
  layout is compiled once (~25% of a launch here), as jax_disable_most_optimizations halves each compile."""
  return {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("compilation_cache")),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
          "JAX_DISABLE_MOST_OPTIMIZATIONS": "true"}


def run_processes(args, *, processes: int, devices: int, environ: dict, timeout: float = 300,
                  script: str = "launch/train.py", while_running=None):
  """<script> (a path in the repository) on `processes` local processes of `devices` CPU devices each;
  [(returncode, output)].

  environ: added to this process's environment (compilation_cache). A process still running at
  `timeout` (e.g. one left alone in a collective) is killed and fails the test.
  while_running(children): called once all are started (e.g. to kill one of them).
  """
  port = free_port()
  children, logs = [], []
  for index in range(processes):
    child_environ = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
                     "JAX_PLATFORMS": "cpu", **environ}
    cluster = ([f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={processes}",
                f"--process_id={index}"] if processes > 1 else [])
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: nothing blocks on a full pipe
    children.append(subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, script), *args,
                                      *cluster], env=child_environ, stdout=log, stderr=subprocess.STDOUT, text=True))
    logs.append(log)
  deadline = time.time() + timeout
  try:
    if while_running is not None:
      while_running(children)
    for child in children:
      child.wait(timeout=max(deadline - time.time(), 1))
  except subprocess.TimeoutExpired:
    pass
  finally:
    for child in children:
      if child.poll() is None:
        child.kill()
        child.wait()
  outputs = []
  for log in logs:
    log.seek(0)
    outputs.append("".join(line for line in log if not line.startswith("[Gloo]")))
    log.close()
  return [(child.returncode, output) for child, output in zip(children, outputs)]


def train_args(workdir, corpus, cache, **overrides):
  settings = {**RUN, "data.path": corpus, "data.cache_dir": cache, **overrides}
  return ([f"--config={REPO_ROOT}/configs/quickstart.py:smoke", f"--workdir={workdir}"]
          + [f"--config.{key}={value}" for key, value in settings.items()])


def assert_succeeded(results):
  for index, (returncode, output) in enumerate(results):
    assert returncode == 0, f"process {index} exited with {returncode}:\n{output[-3000:]}"


def losses(workdir) -> dict:
  return {record["step"]: record["loss"] for record in loop.read_records(workdir) if record["kind"] == "train"}


def assert_same_losses(left: dict, right: dict, steps):
  np.testing.assert_allclose([left[step] for step in steps], [right[step] for step in steps], rtol=2e-5)


def keep_checkpoints_up_to(workdir, step):
  """Deletes the checkpoints after `step`, as if the run had stopped there."""
  folder = os.path.join(workdir, "checkpoints")
  for name in os.listdir(folder):
    if name.isdigit() and int(name) > step:
      shutil.rmtree(os.path.join(folder, name))


# ----------------------------------------------------------------------------
# No subprocess.


def test_distributed_arguments_come_from_flags_then_srun_then_nothing():
  explicit = distributed.requested_arguments("10.0.0.1:1234", 2, 1, environ={})
  assert explicit == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
  # srun of 4 tasks: every argument detected by jax.distributed; the batch script's own step is one task.
  assert distributed.requested_arguments(environ={"SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4"}) == {}
  assert distributed.requested_arguments(environ={"SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "4"}) is None
  assert distributed.requested_arguments(multihost=True, environ={}) == {}
  assert distributed.requested_arguments(environ={}) is None
  with pytest.raises(ValueError, match="--coordinator_address"):
    distributed.requested_arguments(num_processes=2, process_id=0, environ={})


@pytest.mark.parametrize("config_of", [
    lambda corpus, folders: smoke_config(corpus, folders["cache"]),
    lambda corpus, folders: smoke_config(corpus, folders["cache"], **{"data.batching": "stream"}),
    lambda corpus, folders: folders["mlm"](corpus, folders["cache"]),
    lambda corpus, folders: folders["finetune"]("task=rucola", folders["rucola"]),
    lambda corpus, folders: folders["finetune"]("task=upos", folders["treebank"]),
    lambda corpus, folders: folders["finetune"]("task=xquad_ru", folders["squad"]),
], ids=["causal_lm", "causal_lm_stream", "masked_lm", "classification", "tagging", "squad"])
def test_every_task_gives_each_process_its_rows_of_the_one_global_batch(config_of, tiny_corpus, cache_dir,
                                                                         tmp_path):
  import task_fixtures
  from test_masked_lm import _config as masked_lm_config
  folders = {"cache": cache_dir, "finetune": task_fixtures.finetune_config, "mlm": masked_lm_config,
             "rucola": task_fixtures.write_classification(str(tmp_path / "rucola")),
             "treebank": task_fixtures.write_treebank(str(tmp_path / "treebank")),
             "squad": task_fixtures.write_squad(str(tmp_path / "squad"))}
  task = tasks.build_task(config_of(tiny_corpus, folders))
  whole = task.train_batch(7, seed=3, batch_size=8)
  halves = [task.train_batch(7, seed=3, batch_size=8, process_index=index, process_count=2) for index in (0, 1)]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([half[key] for half in halves]), whole[key])


# ----------------------------------------------------------------------------
# Processes over loopback.


@pytest.fixture(scope="module")
def two_by_two(tiny_corpus, cache_dir, tmp_path_factory, compilation_cache):
  """A 6-step run by 2 processes x 2 devices (checkpoints 2, 4, 6): (workdir, losses, outputs)."""
  workdir = str(tmp_path_factory.mktemp("two_by_two"))
  results = run_processes(train_args(workdir, tiny_corpus, cache_dir), processes=2, devices=2,
                          environ=compilation_cache)
  assert_succeeded(results)
  return workdir, losses(workdir), [output for _, output in results]


def test_two_processes_log_the_losses_of_one_process_with_the_same_devices(two_by_two, tiny_corpus,
                                                                         cache_dir, tmp_path):
  workdir, two_process_losses, outputs = two_by_two
  assert sorted(two_process_losses) == list(range(1, 7))
  # Logs and progress come from process 0 alone; process 1 prints nothing of its own.
  assert "final validation" in outputs[0] and "final validation" not in outputs[1]
  assert "step 2: valid" in outputs[0] and "step 2: valid" not in outputs[1]
  # One process with the same 4 devices (this test process's simulated ones), the same global batch.
  config = smoke_config(tiny_corpus, cache_dir, **RUN)
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert_same_losses(two_process_losses, losses(str(tmp_path)), range(1, 7))


@pytest.mark.slow
def test_checkpoints_move_between_two_processes_and_one_device_and_two_processes_score_them(
    two_by_two, tiny_corpus, cache_dir, tmp_path, compilation_cache):
  workdir, two_process_losses, _ = two_by_two
  copy = str(tmp_path / "workdir")
  shutil.copytree(workdir, copy)
  # Written by 2 processes x 2 devices at step 2, restored by 1 process with 1 device: the same
  # global batches from step 3 on, so the same losses.
  keep_checkpoints_up_to(copy, 2)
  assert_succeeded(run_processes(train_args(copy, tiny_corpus, cache_dir), processes=1, devices=1,
                                 environ=compilation_cache))
  assert_same_losses(losses(copy), two_process_losses, range(3, 7))
  # And back: step 4, written by the one device, restored by 2 processes x 2 devices.
  keep_checkpoints_up_to(copy, 4)
  assert_succeeded(run_processes(train_args(copy, tiny_corpus, cache_dir), processes=2, devices=2,
                                 environ=compilation_cache))
  assert_same_losses(losses(copy), two_process_losses, range(5, 7))
  assert sorted(int(name) for name in os.listdir(os.path.join(copy, "checkpoints")) if name.isdigit()) == [2, 4, 6]
  # launch/evaluate.py on 2 processes scores the whole validation split as the training loop did.
  results = run_processes([f"--workdir={copy}", "--split=valid", "--step=6"], processes=2, devices=2,
                          environ=compilation_cache, script="launch/evaluate.py")
  assert_succeeded(results)
  scored = json.loads(results[0][1].strip().splitlines()[-1])
  validated = [record for record in loop.read_records(copy) if record["kind"] == "valid"][-1]
  assert validated["step"] == 6 and scored["tokens"] == validated["tokens"]
  np.testing.assert_allclose(scored["loss"], validated["loss"], rtol=2e-5)
  assert "valid at step 6" not in results[1][1]  # scores are printed by process 0 alone


def test_one_process_out_of_time_stops_both_at_the_same_step(tiny_corpus, cache_dir, tmp_path,
                                                             compilation_cache):
  """train.max_minutes=30 is far off for process 0; process 1's clock (train_and_evaluate's `clock`,
  set by tests/train_with_clock_ahead.py) jumps an hour ahead once training has started, so it is
  out of time after its first step. Without agreement process 0 would go on to step 2 and wait
  there alone: the test would time out."""
  workdir = str(tmp_path)
  results = run_processes(train_args(workdir, tiny_corpus, cache_dir, **{"train.max_minutes": 30.0}),
                          processes=2, devices=2, environ=compilation_cache,
                          script="tests/train_with_clock_ahead.py")
  assert_succeeded(results)
  assert "stopping at step 1: train.max_minutes=30.0 reached" in results[0][1]
  assert sorted(losses(workdir)) == [1]
  records = loop.read_records(workdir)
  assert [(record["step"], record["kind"]) for record in records] == [(1, "train"), (1, "valid")]
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "1"))


def logged_steps(workdir) -> int:
  """The last step process 0 has logged so far (0 before any), read while the run writes."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  steps = [json.loads(line)["step"] for line in open(path) if line.endswith("\n")]
  return max(steps, default=0)


def test_a_killed_process_leaves_the_other_one_line_that_says_how_to_resume(tiny_corpus, cache_dir, tmp_path,
                                                                            compilation_cache):
  """Process 1 is SIGKILLed in steady training (every collective already set up, no checkpoint
  being written). Process 0's next collective fails: it says so in one line naming process 1 and
  what a rerun resumes from, and exits 1 at once, not after jax.distributed's shutdown barrier
  has waited out the heartbeat and aborted. (A process lost while the others wait in a
  checkpoint's barrier is still ended by jax's coordination service, after its heartbeat
  timeout, with its own dump: README "Multi-process".)"""
  workdir = str(tmp_path)

  def kill_process_one_in_steady_training(children):
    deadline = time.time() + 240
    while time.time() < deadline and logged_steps(workdir) < 20:
      time.sleep(0.2)
    children[1].kill()

  results = run_processes(train_args(workdir, tiny_corpus, cache_dir, **{"train.steps": 5000, "train.eval_every": 4000}),
                          processes=2, devices=2, environ=compilation_cache,
                          while_running=kill_process_one_in_steady_training, timeout=150)
  returncode, output = results[0]
  assert returncode == 1, output[-3000:]
  lines = [line for line in output.splitlines() if line.startswith("launch/train.py:")]
  assert len(lines) == 1 and "Traceback" not in output, output[-3000:]
  assert lines[0].startswith("launch/train.py: process 0 of 2: process 1 stopped answering (")
  assert lines[0].endswith("Run every process's command again: no checkpoint was saved yet, so they start again.")
