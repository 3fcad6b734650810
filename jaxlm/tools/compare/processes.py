"""A cell's commands as supervised processes: locked, pinned to their cores, and stopped with the grid.

Cells run as subprocesses, `parallel` at once, each pinned to its own share of the
cores (taskset, or sched_setaffinity) with XLA's and BLAS's thread pools sized to it, and in
its own process group: a SIGTERM or Ctrl-C to the grid is passed on to each once, so every
running cell saves its checkpoint and records its attempt before the grid exits. Tests inject
an in-process runner (`run_in_process`), which runs the same library code.

A runner is called as runner(cell, cores, children): it runs the cell on `cores`, starting its
commands through `children` (the grid run's Children), and returns {"evaluations": [one summary
per split], "cpu_seconds": ...}, or raises CellFailed.
"""

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from jaxlm.tools.compare import cell_configs
from jaxlm.tools.compare import grid as grid_lib

LOG_FILE = "log.txt"  # the cell's commands' stdout and stderr, appended per attempt
LOCK_FILE = ".running"  # flock'ed while a runner works in the cell's workdir


class CellFailed(RuntimeError):
  """A cell's command exited non-zero; the message names its log."""

  def __init__(self, message: str, exit_code: int = 1, cpu_seconds: float = 0.0):
    super().__init__(message)
    self.exit_code = exit_code
    self.cpu_seconds = cpu_seconds  # spent before it stopped: a resumed cell's result counts it

  @property
  def interrupted(self) -> bool:
    """launch/train.py stopped by SIGINT / SIGTERM: exit 130 / 143 with its checkpoint saved, or
    killed by the signal itself (exit -2 / -15) before it set its handlers (while reading data),
    or never started because the grid had been stopped. The cell's command gets the signal from
    run_grid, which stops too (Children), or from someone else: then the grid stops as well."""
    return self.exit_code in (130, 143, -signal.SIGINT, -signal.SIGTERM)


@contextlib.contextmanager
def cell_lock(cell: grid_lib.Cell):
  """Yields True with the cell's workdir locked (fcntl.flock), False if another process holds it: two
  launch/compare.py calls on one grid (say, --only slices side by side) never train one workdir at once."""
  os.makedirs(cell.workdir, exist_ok=True)
  with open(os.path.join(cell.workdir, LOCK_FILE), "w", encoding="utf-8") as handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def core_slots(parallel: int) -> list[list[int]]:
  """This process's cores dealt into `parallel` disjoint groups (a group per concurrent cell)."""
  cores = sorted(os.sched_getaffinity(0))
  if parallel < 1 or parallel > len(cores):
    raise grid_lib.GridError(f"--parallel={parallel}: this process may use {len(cores)} cores ({cores}); "
                             f"give 1..{len(cores)}")
  return [cores[index::parallel] for index in range(parallel)]


def cell_environment(cores: int, compilation_cache: str = "") -> dict:
  """The environment of a cell pinned to `cores` cores, so that cells side by side do not each start
  thread pools as large as the machine: XLA sizes its CPU pool by the schedulable cores (the
  affinity set), and on one core runs its ops on the calling thread; OpenMP and BLAS pools get
  `cores` threads.

  compilation_cache: a folder for jax's persistent compilation cache, shared by the grid's cells
  (the cells of a row, and its seeds, compile the same programs: the first compiles, the rest
  read). Every program is cached, however quick its compile. A cache the user named in
  JAX_COMPILATION_CACHE_DIR is kept."""
  environment = dict(os.environ)
  if compilation_cache and not environment.get("JAX_COMPILATION_CACHE_DIR"):
    environment["JAX_COMPILATION_CACHE_DIR"] = compilation_cache
    environment["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  if cores == 1:
    environment["XLA_FLAGS"] = f"{environment.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
  for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    environment[variable] = str(cores)
  return environment


class Children:
  """One grid run's running commands, each in its own process group, and the stop signal sent them.

  A SIGTERM or SIGINT to launch/compare.py is passed on once to every running command (which
  saves its checkpoint and exits 143 / 130), so the grid records the stopped attempts, writes its
  table and exits; no command outlives it or starts after it. Own process groups, so that a
  signal sent to compare.py's group (Ctrl-C in a terminal, `kill -- -PGID`, a scheduler's stop)
  reaches each command once, through compare.py: launch/train.py takes a second signal as "stop
  at once, unsaved". Commands run in pool threads; the handler runs in the main thread.
  run_grid makes one per run and hands it to its runner.
  """

  def __init__(self):
    self._lock = threading.RLock()  # re-entrant: the handler may interrupt the main thread anywhere
    self._running: set[subprocess.Popen] = set()
    self._jobs: set = set()  # cluster jobs (jaxlm.tools.compare.cluster): cancelled, not signalled
    self.stop_signal = 0  # the signal that stopped the grid; no command starts after it

  def start(self, argv: list[str], **popen_arguments) -> subprocess.Popen | None:
    """The started command, or None if the grid was stopped."""
    with self._lock:
      if self.stop_signal:
        return None
      process = subprocess.Popen(argv, process_group=0, **popen_arguments)
      self._running.add(process)
      return process

  def finished(self, process: subprocess.Popen) -> None:
    with self._lock:
      self._running.discard(process)

  def submit(self, make_job):
    """make_job(): a submitted cluster job (submitit's Job), or None without calling it if the grid was stopped."""
    with self._lock:
      if self.stop_signal:
        return None
      job = make_job()
      self._jobs.add(job)
      return job

  def finished_job(self, job) -> None:
    with self._lock:
      self._jobs.discard(job)

  def pass_on(self, signal_number: int) -> None:
    with self._lock:
      self.stop_signal = signal_number
      for process in self._running:
        # os.kill, not send_signal: that polls, and could reap the exit its thread's wait4 waits for.
        with contextlib.suppress(ProcessLookupError):
          os.kill(process.pid, signal_number)
      for job in self._jobs:  # the job's command gets a SIGINT (local) or SIGTERM (scancel) and saves
        with contextlib.suppress(Exception):
          job.cancel(check=False)

  @contextlib.contextmanager
  def passing_on_stop_signals(self, stop: threading.Event):
    """While the grid runs: SIGTERM and SIGINT stop it (no cell starts) and reach the running commands.

    Signal handlers can only be set from the main thread; elsewhere (a grid run from a worker
    thread) the defaults stay.
    """
    if threading.current_thread() is not threading.main_thread():
      yield
      return

    def handle(signal_number, frame):
      stop.set()
      self.pass_on(signal_number)

    previous = {number: signal.signal(number, handle) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
      yield
    finally:
      for number, handler in previous.items():
        signal.signal(number, handler)


def _run_pinned(argv: list[str], cores: list[int], log, children: Children, *, capture: bool = False,
                compilation_cache: str = "") -> tuple[int, float, str]:
  """(exit code, CPU seconds (user + system, from wait4), stdout if captured) of argv run on `cores`,
  started through `children`.

  A grid already stopped by a signal starts nothing: (minus that signal, 0.0, "").
  """
  argv = [sys.executable] + argv[1:]  # "python" -> this interpreter (the venv's)
  taskset = shutil.which("taskset")
  if taskset:
    argv = [taskset, "-c", ",".join(map(str, cores))] + argv
  process = children.start(argv, stdout=subprocess.PIPE if capture else log, stderr=log,
                           env=cell_environment(len(cores), compilation_cache), text=True)
  if process is None:
    return -children.stop_signal, 0.0, ""
  try:
    if not taskset:
      os.sched_setaffinity(process.pid, cores)
    output = process.stdout.read() if capture else ""
    _, status, usage = os.wait4(process.pid, 0)  # wait4: the child's own CPU time, not all children's
    process.returncode = os.waitstatus_to_exitcode(status)
  finally:
    children.finished(process)
  if capture:
    log.write(output)
  return process.returncode, usage.ru_utime + usage.ru_stime, output


def run_subprocess(cell: grid_lib.Cell, cores: list[int], children: Children, *, compilation_cache: str = "") -> dict:
  """Production runner: the cell's command, then (fine-tuning) launch/evaluate.py on its best checkpoint.

  compilation_cache: the folder of the persistent compilation cache the cells share (cell_environment);
  launch/compare.py gives <--workdir>/compilation_cache.

  Returns {"evaluations": [one summary per split], "cpu_seconds": ...}; raises CellFailed.
  """
  os.makedirs(cell.workdir, exist_ok=True)
  log_path = os.path.join(cell.workdir, LOG_FILE)
  with open(log_path, "a", encoding="utf-8") as log:
    log.write(f"\n$ {cell.command_line()}  # {time.strftime('%Y-%m-%d %H:%M:%S')}, cores {cores}\n")
    log.flush()
    code, cpu_seconds, _ = _run_pinned(cell.command(), cores, log, children, compilation_cache=compilation_cache)
    if code != 0:
      raise CellFailed(f"{cell.name}: `{cell.command_line()}` exited {code}; see {log_path}", code, cpu_seconds)
    evaluations = []
    if cell.kind in grid_lib.SCORED:
      log.write(f"$ {shlex.join(cell.evaluate_command())}\n")
      log.flush()
      code, evaluate_seconds, output = _run_pinned(cell.evaluate_command(), cores, log, children, capture=True,
                                                         compilation_cache=compilation_cache)
      if code != 0:
        raise CellFailed(f"{cell.name}: `{shlex.join(cell.evaluate_command())}` exited {code}; see {log_path}",
                         code, cpu_seconds + evaluate_seconds)
      cpu_seconds += evaluate_seconds
      evaluations = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
  return {"evaluations": evaluations, "cpu_seconds": cpu_seconds}


def run_in_process(cell: grid_lib.Cell, cores: list[int], children: Children) -> dict:
  """Test runner: the library calls launch/train.py and launch/evaluate.py make, in this process."""
  del cores, children
  if cell.kind == "fasttext":
    raise grid_lib.GridError(f"{cell.name}: FastText cells run as subprocesses only (run_subprocess)")
  from jaxlm.training import evaluate, loop
  started = time.process_time()
  loop.train_and_evaluate(cell_configs.load_config(cell.config, cell.overrides), cell.workdir, progress=False)
  evaluations = (evaluate.evaluate_workdir(cell.workdir, best=True, splits=cell.splits)
                 if cell.kind in grid_lib.SCORED else [])
  return {"evaluations": evaluations, "cpu_seconds": time.process_time() - started}
