"""SIGKILL a training run at random moments, resume it, and compare with an uninterrupted run.

  python launch/kill_trials.py --trials=10 --root=/tmp/kill_trials

Each trial starts launch/train.py on the config, kills it with SIGKILL at a random moment
(even trials: after a random logged step; odd trials: while a checkpoint is being written,
i.e. once Orbax's temporary directory of a step at or after a random one appears, so the
resume starts from an earlier checkpoint or from none), runs the same command again to
completion, and compares every logged train loss and the final validation loss with the
uninterrupted run's, for equality (not closeness). Prints one JSON line per trial and a
summary line; exits 1 if any trial differs.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags

from jaxlm import errors

_CONFIG = flags.DEFINE_string("config", "configs/quickstart.py:smoke", "Config file[:variant].")
_OVERRIDES = flags.DEFINE_list("overrides", ["train.steps=24", "train.log_every=1", "train.eval_every=4"],
                               "--config.<key>=<value> overrides, as key=value.")
_TRIALS = flags.DEFINE_integer("trials", 10, "Kill-and-resume trials.")
_ROOT = flags.DEFINE_string("root", "/tmp/kill_trials", "Folder for the workdirs (emptied first).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random kill moments.")


def command(workdir):
  return [sys.executable, os.path.join(_path.ROOT, "launch", "train.py"), f"--config={_CONFIG.value}",
          f"--workdir={workdir}", *[f"--config.{override}" for override in _OVERRIDES.value]]


def logged(workdir) -> dict:
  """{(kind, step): loss}, the last record of each (a resume re-logs nothing it kept)."""
  values = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as handle:
      for line in handle:
        if line.endswith("\n"):
          record = json.loads(line)
          if "loss" in record:
            values[(record["kind"], record["step"])] = record["loss"]
  return values


def written_step(name: str) -> int:
  """The step of a checkpoint directory being written ("12.orbax-checkpoint-tmp-..." -> 12), or -1."""
  prefix = name.split(".")[0]
  return int(prefix) if prefix.isdigit() else -1


def kill_moment(process, workdir, rng, during_save: bool, steps: int) -> str:
  """Waits for the chosen moment, kills the process; says when it struck."""
  checkpoints = os.path.join(workdir, "checkpoints")
  target = rng.randint(1, steps - 1)
  deadline = time.time() + 600
  while process.poll() is None and time.time() < deadline:
    if during_save:
      writing = [name for name in os.listdir(checkpoints)] if os.path.isdir(checkpoints) else []
      writing = [name for name in writing if "tmp" in name and written_step(name) >= target]
      if writing and rng.random() < 0.5:  # sometimes at once, sometimes a poll later
        process.send_signal(signal.SIGKILL)
        return f"during the write of {writing[0]}"
    else:
      done = [step for kind, step in logged(workdir) if kind == "train"]
      if done and max(done) >= target:
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        return f"after step {max(done)} (+ up to 0.3 s)"
    time.sleep(0.005)
  return "the run ended first"


@errors.one_line("launch/kill_trials.py")
def main(argv):
  del argv
  # The last train.steps= counts, as the last of repeated --config.train.steps flags does.
  steps = next((value.partition("=")[2] for value in reversed(_OVERRIDES.value) if value.startswith("train.steps=")),
               "")
  if not steps.isdigit() or int(steps) < 2:
    raise errors.ConfigError(f"--overrides={','.join(_OVERRIDES.value)} must set train.steps=N with N >= 2: the "
                             "kill moments are drawn between steps 1 and N - 1")
  steps = int(steps)
  shutil.rmtree(_ROOT.value, ignore_errors=True)
  whole = os.path.join(_ROOT.value, "whole")
  uninterrupted = subprocess.run(command(whole), capture_output=True, text=True)
  if uninterrupted.returncode:
    lines = uninterrupted.stderr.strip().splitlines()
    if len(lines) == 1 and lines[0].startswith("launch/train.py: "):  # a mistake in --config or --overrides
      raise errors.ConfigError(lines[0])
    sys.exit(f"{uninterrupted.stderr}launch/kill_trials.py: the uninterrupted run exited "
             f"{uninterrupted.returncode}; its stderr is above")
  expected = logged(whole)
  rng = random.Random(_SEED.value)
  identical = 0
  for trial in range(_TRIALS.value):
    workdir = os.path.join(_ROOT.value, f"trial{trial}")
    process = subprocess.Popen(command(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    moment = kill_moment(process, workdir, rng, during_save=trial % 2 == 1, steps=steps)
    process.wait()
    resumed = subprocess.run(command(workdir), capture_output=True, text=True)
    got = logged(workdir)
    same = resumed.returncode == 0 and got == expected
    identical += same
    print(json.dumps({"trial": trial, "killed": moment, "resume_exit": resumed.returncode, "identical": same,
                      "differing": sorted(f"{kind} {step}" for kind, step in set(got) | set(expected)
                                          if got.get((kind, step)) != expected.get((kind, step)))[:5],
                      "stderr": resumed.stderr.strip().splitlines()[-1:] if resumed.returncode else []}))
  print(f"identical: {identical}/{_TRIALS.value} (every logged train loss and validation loss equal)")
  sys.exit(0 if identical == _TRIALS.value else 1)


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/kill_trials.py", None))
