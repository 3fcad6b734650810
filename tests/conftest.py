"""Test set-up: 4 simulated CPU devices and fast compiles.

XLA_FLAGS must be set before jax is first imported, so it is set here, at the
top of the first module pytest loads.

Compilation dominates a tiny model's test, and many tests compile the very same
program (the smoke config's train step, its evaluation): a persistent compilation
cache, fresh for each pytest session and shared with the subprocesses tests start
(they inherit the environment), compiles each program once. It cut
tests/test_reliability.py's CPU time from 180 s to 67 s. Set
JAX_COMPILATION_CACHE_DIR yourself to keep one across sessions.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxlm-test-compilation-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
# Every program, however quick to compile or small: the smoke models' programs are both.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Roughly halves the compile time of a first step on tiny models; tests only. Through the
# environment, so the subprocesses tests start (launchers, notebook kernels) compile alike.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")

import jax  # noqa: E402

import os as _os  # noqa: E402

import numpy as _np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
SHARED_DATA = _os.path.join(_os.path.dirname(REPO_ROOT), "shared", "data")


def write_tiny_corpus(folder: str, *, seed: int = 0, lines: tuple = (400, 40, 40)) -> str:
  """A WikiText-format corpus of short random sentences over a 60-word vocabulary."""
  rng = _np.random.default_rng(seed)
  words = [f"w{index}" for index in range(60)]
  _os.makedirs(folder, exist_ok=True)
  for split, count in zip(("train", "valid", "test"), lines):
    with open(_os.path.join(folder, f"{split}.txt"), "w", encoding="utf-8") as handle:
      for _ in range(count):
        # Zipf-like word choice so there is something to learn.
        ids = _np.minimum(rng.zipf(1.3, size=rng.integers(3, 12)) - 1, len(words) - 1)
        handle.write(" " + " ".join(words[i] for i in ids) + " \n")
  return folder


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
  return write_tiny_corpus(str(tmp_path_factory.mktemp("tiny_corpus")))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("cache"))


def smoke_config(corpus_dir: str, cache: str, **overrides):
  """The quickstart smoke config on the tiny corpus; overrides as dotted keys."""
  from configs import quickstart
  config = quickstart.get_config("smoke")
  config.data.path = corpus_dir
  config.data.cache_dir = cache
  config.train.eval_tokens = 0
  return override(config, **overrides)


def snapshot(folder: str) -> dict:
  """{relative path: bytes} of every file under `folder` (a refused run must change none)."""
  files = {}
  for root, _, names in _os.walk(folder):
    for name in names:
      path = _os.path.join(root, name)
      with open(path, "rb") as handle:
        files[_os.path.relpath(path, folder)] = handle.read()
  return files


def override(config, **overrides):
  """Sets dotted keys of a config, as --config.<path>=<value> does; returns the config."""
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config
