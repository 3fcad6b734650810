"""A grid of fine-tuning runs as cells: expand a grid config, run what is not finished, pre-training first.

A cell is one command a user could type: `python launch/train.py --config=configs/finetune.py:
task=rucola,body=lstm,start=fasttext --config.seed=1 ... --workdir=...` (or `launch/fasttext.py`
for the FastText vectors every FastText start reads). The pre-training runs the checkpoint
starts come from (a masked LM and a causal LM per body) are cells too, with their cost.

A cell is finished when its workdir holds result.json: the runner writes it (atomically)
only after the command exited 0 and the best checkpoint was scored on the task's splits.
A killed cell has no result.json and runs again; launch/train.py resumes it from its
latest checkpoint (the same losses as an uninterrupted run), so nothing is trained twice
but the steps after that checkpoint. A result.json made by another command (the grid
config changed), or by the same command when it now builds another config (a default in
the config file changed), is an error naming the workdir, never silently reused.

Cells run as subprocesses, `parallel` at once, each pinned to its own share of the
cores (taskset, or sched_setaffinity) with XLA's and BLAS's thread pools sized to it, and in
its own process group: a SIGTERM or Ctrl-C to the grid is passed on to each once, so every
running cell saves its checkpoint and records its attempt before the grid exits. Tests inject
an in-process runner (`run_in_process`), which runs the same library code.
"""

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import fnmatch
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from jaxlm import config_files, errors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
RESULT_FILE = "result.json"
LOG_FILE = "log.txt"  # the cell's commands' stdout and stderr, appended per attempt
LOCK_FILE = ".running"  # flock'ed while a runner works in the cell's workdir
ATTEMPTS_FILE = "attempts.jsonl"  # one line per stopped or failed attempt: its wall and CPU seconds

# A grid start -> (configs/finetune.py's start variant, the pre-training it reads: None |
# "fasttext" (the .bin) | "mlm" / "clm" (a pre-trained workdir's best checkpoint)).
STARTS = {
    "scratch": ("start=scratch", None),
    "fasttext": ("start=fasttext", "fasttext"),
    "frozen": ("start=frozen", "fasttext"),
    "mlm": ("start=checkpoint", "mlm"),
    "clm": ("start=checkpoint", "clm"),
    # SentencePiece pieces of the task's words, each piece's row from FastText (fasttext_pieces).
    "bpe_fasttext": ("input=bpe,start=fasttext", "fasttext"),
}
# Run order: every cell of a level finishes (or fails) before the next level starts.
LEVELS = {"fasttext": 0, "pretrain": 1, "finetune": 2}


class GridError(errors.UserError, ValueError):
  """A grid config or a grid workdir that cannot be run as it is; the message says what to change."""


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
    run_grid, which stops too (_Children), or from someone else: then the grid stops as well."""
    return self.exit_code in (130, 143, -signal.SIGINT, -signal.SIGTERM)


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str  # unique within the grid, e.g. "rucola/lstm/fasttext/seed1" or "pretrain/ru/mlm_lstm"
  kind: str  # a key of LEVELS
  config: str  # "<config file>[:<variants>]"
  overrides: tuple[str, ...]  # "key=value": --config.key=value on the command line
  workdir: str
  needs: tuple[str, ...] = ()  # names of cells whose outputs this one reads
  task: str = ""
  body: str = ""
  start: str = ""
  seed: int = 0
  metric: str = ""  # the task's number in the table (a key of its summary)
  splits: tuple[str, ...] = ()  # scored at the best checkpoint; the first is dev ("valid")
  test_split: str = ""  # one of splits with labels to report as test; "" = none
  also_metrics: tuple[str, ...] = ()  # more dev summary keys for the table (QA's exact_match beside f1)

  @property
  def output(self) -> str:
    """What later cells read: the FastText .bin, or the workdir of a trained run."""
    return os.path.join(self.workdir, "fasttext.bin") if self.kind == "fasttext" else self.workdir

  def command(self) -> list[str]:
    """The command, as run from the current directory with `python` the venv's."""
    script = "fasttext.py" if self.kind == "fasttext" else "train.py"
    destination = f"--output={self.output}" if self.kind == "fasttext" else f"--workdir={self.workdir}"
    return ["python", _launcher(script), f"--config={self.config}",
            *(f"--config.{override}" for override in self.overrides), destination]

  def evaluate_command(self) -> list[str]:
    """launch/evaluate.py on the best checkpoint: one JSON line per split, last on stdout."""
    return ["python", _launcher("evaluate.py"), f"--workdir={self.workdir}", "--best",
            f"--split={','.join(self.splits)}"]

  def command_line(self) -> str:
    return shlex.join(self.command())


def _launcher(script: str) -> str:
  """launch/<script> relative to the current directory (just launch/<script> from the repository root)."""
  return os.path.relpath(os.path.join(ROOT, "launch", script))


@dataclasses.dataclass
class Grid:
  cells: list[Cell]  # in run order: by level, then as the grid config lists them
  not_applicable: list[str]  # "task/body/start: why" for combinations the grid leaves out

  def cell(self, name: str) -> Cell:
    return self._by_name()[name]

  def needs_of(self, name: str) -> list[str]:
    """Every cell `name` reads, directly or through another (a masked LM's FastText start), nearest first."""
    chain, pending = [], list(self.cell(name).needs)
    while pending:
      need = pending.pop(0)
      if need not in chain:
        chain.append(need)
        pending += self.cell(need).needs
    return chain

  def _by_name(self) -> dict:
    return {cell.name: cell for cell in self.cells}


def _format(text: str, **values) -> str:
  """str.replace of {key} placeholders (str.format would trip over other braces)."""
  for key, value in values.items():
    text = text.replace("{" + key + "}", str(value))
  return text


GRID_KEYS = ("tasks", "bodies", "starts", "seeds", "task", "pretrain", "finetune", "finetune_variants", "overrides")


def expand(grid_config, workdir: str) -> Grid:
  """Every cell of the grid (configs/compare_ru.py documents the keys), pre-training cells first."""
  missing = [key for key in GRID_KEYS if key not in grid_config]
  if missing:
    raise GridError(f"the --grid config has no {', '.join(missing)}: it is not a grid config (a training config "
                    "goes to launch/train.py); give one like configs/compare_ru.py")
  cells: dict[str, Cell] = {}
  not_applicable = []

  def add(cell: Cell) -> Cell:
    cells.setdefault(cell.name, cell)
    return cells[cell.name]

  def pretrain(language: str, kind: str, body: str) -> Cell | None:
    if language not in grid_config.pretrain:
      raise GridError(f"grid config pretrain has no language {language!r} (a task's language); "
                      f"it has {sorted(grid_config.pretrain)}")
    sources = grid_config.pretrain[language]
    if kind not in sources:
      raise GridError(f"grid config pretrain.{language} has no {kind!r} entry; it has {sorted(sources)}")
    source = sources[kind]
    if kind != "fasttext" and body not in source.bodies:
      return None
    overrides = tuple(source.overrides)
    if kind != "fasttext" and body in source.get("body_overrides", {}):
      overrides += tuple(source.body_overrides[body])
    needs, values = (), {"body": body}
    if kind != "fasttext" and any("{fasttext}" in override for override in overrides):
      fasttext = pretrain(language, "fasttext", body)
      needs, values = (fasttext.name,), {**values, "fasttext": fasttext.output}
    suffix = "" if kind == "fasttext" else f"_{body}"
    name = f"pretrain/{language}/{kind}{suffix}"
    return add(Cell(name=name, kind="fasttext" if kind == "fasttext" else "pretrain",
                    config=_format(source.config, **values),
                    overrides=tuple(_format(override, **values) for override in overrides),
                    workdir=os.path.join(workdir, name), needs=needs, body="" if kind == "fasttext" else body))

  finetune = []
  extra = f",{grid_config.finetune_variants}" if grid_config.finetune_variants else ""
  for task in grid_config.tasks:
    if task not in grid_config.task:
      raise GridError(f"grid config tasks lists {task!r} but task.{task} (its language, metric, splits and "
                      f"overrides) is missing; known: {sorted(grid_config.task)}")
    spec = grid_config.task[task]
    for body in grid_config.bodies:
      for start in (*grid_config.starts, *spec.extra_starts):
        if start not in STARTS:
          raise GridError(f"grid config starts: {start!r} is not one of {list(STARTS)}")
        variant, source = STARTS[start]
        needs, start_overrides = (), ()
        if source == "fasttext":
          fasttext = pretrain(spec.language, "fasttext", body)
          needs, start_overrides = (fasttext.name,), (f"model.fasttext_path={fasttext.output}",)
        elif source is not None:
          pre_trained = pretrain(spec.language, source, body) if body != "fasttext" else None
          if pre_trained is None:
            not_applicable.append(f"{task}/{body}/{start}: no {source} pre-training of this body "
                                  f"(grid config pretrain.{spec.language}.{source}.bodies)")
            continue
          needs, start_overrides = (pre_trained.name,), (f"init.checkpoint={pre_trained.workdir}:best",)
        for seed in grid_config.seeds:
          name = f"{task}/{body}/{start}/seed{seed}"
          finetune.append(Cell(
              name=name, kind="finetune", config=f"{grid_config.finetune}:task={task},body={body},{variant}{extra}",
              overrides=(*grid_config.overrides, *spec.overrides, *start_overrides, f"seed={seed}"),
              workdir=os.path.join(workdir, "finetune", name), needs=needs, task=task, body=body, start=start,
              seed=seed, metric=spec.metric, splits=tuple(spec.splits), test_split=spec.test_split,
              also_metrics=tuple(spec.get("also_metrics", ()))))
  # Seed-major: every (task, body, start) gets its seed 0 before any gets seed 1, so a grid stopped
  # early has every row at fewer seeds rather than some rows missing.
  for cell in sorted(finetune, key=lambda cell: grid_config.seeds.index(cell.seed)):
    add(cell)
  ordered = sorted(cells.values(), key=lambda cell: LEVELS[cell.kind])  # stable: grid order within a level
  return Grid(cells=ordered, not_applicable=not_applicable)


def select(grid: Grid, patterns) -> list[Cell]:
  """The cells whose names match any fnmatch pattern (all when none), plus the cells they need."""
  if not patterns:
    return list(grid.cells)
  chosen = {cell.name for cell in grid.cells if any(fnmatch.fnmatchcase(cell.name, pattern) for pattern in patterns)}
  if not chosen:
    raise GridError(f"--only={','.join(patterns)} matches no cell; names look like "
                    f"{grid.cells[-1].name!r} (--dry_run lists them)")
  chosen |= {need for name in list(chosen) for need in grid.needs_of(name)}
  return [cell for cell in grid.cells if cell.name in chosen]


def read_result(cell: Cell) -> dict | None:
  """The cell's result.json, or None when it has not finished."""
  path = os.path.join(cell.workdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as handle:
    result = json.load(handle)
  if result.get("command") != cell.command_line():
    raise GridError(f"{path} was made by `{result.get('command')}` but the grid now runs `{cell.command_line()}`: "
                    f"delete {cell.workdir} to run the cell again, or put the grid config back")
  _check_config_unchanged(cell, path)
  return result


def _check_config_unchanged(cell: Cell, result_path: str) -> None:
  """The same command can build another config when a default in the config file changed (say, a
  body's learning rate): a result trained otherwise is refused, as launch/train.py refuses to
  resume such a workdir (checkpoint.signature: seed, model, task, data, optim, batch and steps)."""
  from jaxlm import checkpoint
  if cell.kind == "fasttext" or not os.path.exists(os.path.join(cell.workdir, checkpoint.CONFIG_FILE)):
    return
  differences = checkpoint.workdir_differences(cell.workdir, load_config(cell.config, cell.overrides))
  if differences:
    raise GridError(f"{result_path}: the cell's command is unchanged, but it now builds another config than the one "
                    f"its result was trained with ({checkpoint.describe(differences)}; a default in "
                    f"{cell.config.partition(':')[0]} changed). Move {cell.workdir} aside to run the cell again "
                    f"with today's config, or put the config back.")


def _write_result(cell: Cell, result: dict) -> None:
  from jaxlm.data import text_files
  text_files.write_text(os.path.join(cell.workdir, RESULT_FILE), json.dumps(result, indent=1))  # whole or none


@contextlib.contextmanager
def cell_lock(cell: Cell):
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
    raise GridError(f"--parallel={parallel}: this process may use {len(cores)} cores ({cores}); give 1..{len(cores)}")
  return [cores[index::parallel] for index in range(parallel)]


def cell_environment(cores: int) -> dict:
  """The environment of a cell pinned to `cores` cores, so that cells side by side do not each start
  thread pools as large as the machine: XLA sizes its CPU pool by the schedulable cores (the
  affinity set), and on one core runs its ops on the calling thread; OpenMP and BLAS pools get
  `cores` threads."""
  environment = dict(os.environ)
  if cores == 1:
    environment["XLA_FLAGS"] = f"{environment.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
  for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    environment[variable] = str(cores)
  return environment


class _Children:
  """The cells' running commands, each in its own process group, and the stop signals sent them.

  A SIGTERM or SIGINT to launch/compare.py is passed on once to every running command (which
  saves its checkpoint and exits 143 / 130), so the grid records the stopped attempts, writes its
  table and exits; no command outlives it or starts after it. Own process groups, so that a
  signal sent to compare.py's group (Ctrl-C in a terminal, `kill -- -PGID`, a scheduler's stop)
  reaches each command once, through compare.py: launch/train.py takes a second signal as "stop
  at once, unsaved". Commands run in pool threads; the handler runs in the main thread.
  """

  def __init__(self):
    self._lock = threading.RLock()  # re-entrant: the handler may interrupt the main thread anywhere
    self._running: set[subprocess.Popen] = set()
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

  def pass_on(self, signal_number: int) -> None:
    with self._lock:
      self.stop_signal = signal_number
      for process in self._running:
        # os.kill, not send_signal: that polls, and could reap the exit its thread's wait4 waits for.
        with contextlib.suppress(ProcessLookupError):
          os.kill(process.pid, signal_number)


_CHILDREN = _Children()


@contextlib.contextmanager
def _passing_on_stop_signals(stop: threading.Event):
  """While the grid runs: SIGTERM and SIGINT stop it (no cell starts) and reach the running commands.

  Signal handlers can only be set from the main thread; elsewhere (a grid run from a worker
  thread) the defaults stay.
  """
  _CHILDREN.stop_signal = 0
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handle(signal_number, frame):
    stop.set()
    _CHILDREN.pass_on(signal_number)

  previous = {number: signal.signal(number, handle) for number in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield
  finally:
    for number, handler in previous.items():
      signal.signal(number, handler)


def _run_pinned(argv: list[str], cores: list[int], log, *, capture: bool = False) -> tuple[int, float, str]:
  """(exit code, CPU seconds (user + system, from wait4), stdout if captured) of argv run on `cores`.

  A grid already stopped by a signal starts nothing: (minus that signal, 0.0, "").
  """
  argv = [sys.executable] + argv[1:]  # "python" -> this interpreter (the venv's)
  taskset = shutil.which("taskset")
  if taskset:
    argv = [taskset, "-c", ",".join(map(str, cores))] + argv
  process = _CHILDREN.start(argv, stdout=subprocess.PIPE if capture else log, stderr=log,
                            env=cell_environment(len(cores)), text=True)
  if process is None:
    return -_CHILDREN.stop_signal, 0.0, ""
  try:
    if not taskset:
      os.sched_setaffinity(process.pid, cores)
    output = process.stdout.read() if capture else ""
    _, status, usage = os.wait4(process.pid, 0)  # wait4: the child's own CPU time, not all children's
    process.returncode = os.waitstatus_to_exitcode(status)
  finally:
    _CHILDREN.finished(process)
  if capture:
    log.write(output)
  return process.returncode, usage.ru_utime + usage.ru_stime, output


def run_subprocess(cell: Cell, cores: list[int]) -> dict:
  """Production runner: the cell's command, then (fine-tuning) launch/evaluate.py on its best checkpoint.

  Returns {"evaluations": [one summary per split], "cpu_seconds": ...}; raises CellFailed.
  """
  os.makedirs(cell.workdir, exist_ok=True)
  log_path = os.path.join(cell.workdir, LOG_FILE)
  with open(log_path, "a", encoding="utf-8") as log:
    log.write(f"\n$ {cell.command_line()}  # {time.strftime('%Y-%m-%d %H:%M:%S')}, cores {cores}\n")
    log.flush()
    code, cpu_seconds, _ = _run_pinned(cell.command(), cores, log)
    if code != 0:
      raise CellFailed(f"{cell.name}: `{cell.command_line()}` exited {code}; see {log_path}", code, cpu_seconds)
    evaluations = []
    if cell.kind == "finetune":
      log.write(f"$ {shlex.join(cell.evaluate_command())}\n")
      log.flush()
      code, evaluate_seconds, output = _run_pinned(cell.evaluate_command(), cores, log, capture=True)
      if code != 0:
        raise CellFailed(f"{cell.name}: `{shlex.join(cell.evaluate_command())}` exited {code}; see {log_path}",
                         code, cpu_seconds + evaluate_seconds)
      cpu_seconds += evaluate_seconds
      evaluations = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
  return {"evaluations": evaluations, "cpu_seconds": cpu_seconds}


def load_config(spec: str, overrides=()):
  """The config launch/train.py builds from --config=<spec> --config.<override>... ("key=value" each),
  by the same code (jaxlm.config_files), so a grid override means what it means there."""
  path = spec if os.path.exists(spec.partition(":")[0]) else os.path.join(ROOT, spec)
  try:
    return config_files.load_with_overrides(path, overrides)
  except errors.ConfigError as error:
    raise GridError(f"config {spec}: {error}; fix the grid config's overrides or the --grid.* flag that "
                    "sets them") from None
  except errors.UserError as error:
    raise GridError(f"config {spec}: {error}") from None


def check_configs(cells) -> None:
  """Builds every cell's config (no data, no model) so that a mistyped key or value in the grid's
  overrides stops the grid before any cell runs, naming the cell, not when the grid reaches it."""
  for cell in cells:
    try:
      load_config(cell.config, cell.overrides)
    except GridError as error:
      raise GridError(f"{cell.name}: {error}") from None


def run_in_process(cell: Cell, cores: list[int]) -> dict:
  """Test runner: the library calls launch/train.py and launch/evaluate.py make, in this process."""
  del cores
  if cell.kind == "fasttext":
    raise GridError(f"{cell.name}: FastText cells run as subprocesses only (run_subprocess)")
  from jaxlm.training import evaluate, loop
  started = time.process_time()
  loop.train_and_evaluate(load_config(cell.config, cell.overrides), cell.workdir, progress=False)
  evaluations = (evaluate.evaluate_workdir(cell.workdir, best=True, splits=cell.splits)
                 if cell.kind == "finetune" else [])
  return {"evaluations": evaluations, "cpu_seconds": time.process_time() - started}


def _steps_and_batch(cell: Cell) -> tuple[int | None, dict]:
  """(the last trained step, the batch's shape) of a trained cell, from its metrics.jsonl and config.json."""
  from jaxlm import checkpoint
  from jaxlm.tools import plot
  config = checkpoint.load_config(cell.workdir)
  curve = plot.read_curve(os.path.join(cell.workdir, "metrics.jsonl"), kind="train", x="step", y="loss")
  return int(curve[-1][0]), {"batch_size": config.train.batch_size, "seq_len": config.train.seq_len}


def code_version() -> str | None:
  """The commit of the code that runs the cells (`git describe --always --dirty`: "-dirty" when the
  checkout has uncommitted changes), or None outside a git checkout. A grid run over several
  sittings can run its cells on different code; each result says which."""
  try:
    described = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=7"],
                               capture_output=True, text=True, check=False)
  except OSError:  # no git on this machine
    return None
  if described.returncode != 0:  # not a git checkout (an unpacked archive)
    return None
  return described.stdout.strip() or None


def _record_attempt(cell: Cell, error: CellFailed, wall_seconds: float) -> None:
  """Appends a stopped or failed attempt's cost to the cell's attempts file (its result adds them)."""
  with open(os.path.join(cell.workdir, ATTEMPTS_FILE), "a", encoding="utf-8") as handle:
    handle.write(json.dumps({"exit_code": error.exit_code, "wall_seconds": wall_seconds,
                             "cpu_seconds": error.cpu_seconds, "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def _earlier_attempts(cell: Cell) -> list[dict]:
  path = os.path.join(cell.workdir, ATTEMPTS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as handle:
    return [json.loads(line) for line in handle if line.strip()]


def _result(cell: Cell, outcome: dict, wall_seconds: float) -> dict:
  # A cell resumed after a stop (a grid run over several sittings) continued its earlier attempts'
  # training from their checkpoint: its cost is theirs plus this one's.
  earlier = _earlier_attempts(cell)
  cpu_seconds = outcome.get("cpu_seconds")
  if cpu_seconds is not None:
    cpu_seconds += sum(attempt["cpu_seconds"] for attempt in earlier)
  result = {"name": cell.name, "kind": cell.kind, "command": cell.command_line(), "code": code_version(),
            "wall_seconds": wall_seconds + sum(attempt["wall_seconds"] for attempt in earlier),
            "cpu_seconds": cpu_seconds, "attempts": len(earlier) + 1,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
  if cell.kind == "fasttext":
    return result
  steps, shape = _steps_and_batch(cell)
  result["steps"] = steps
  if cell.kind == "pretrain":
    result["tokens_seen"] = steps * shape["batch_size"] * shape["seq_len"]
    return result
  splits = {evaluation["split"]: evaluation for evaluation in outcome["evaluations"]}
  dev = splits[cell.splits[0]]
  result.update(task=cell.task, body=cell.body, start=cell.start, seed=cell.seed, metric=cell.metric,
                best_step=dev["step"], examples_seen=steps * shape["batch_size"], splits=splits,
                dev=dev[cell.metric], test=splits[cell.test_split][cell.metric] if cell.test_split else None)
  return result


def run_grid(grid: Grid, *, parallel: int = 1, only=(), runner=run_subprocess, log=print) -> dict:
  """Runs every selected cell that has no result, `parallel` at a time, level by level.

  A cell whose needed cell has no result (it failed) is skipped as blocked; a cell stopped by
  a signal stops the grid, and so does a SIGTERM or SIGINT to this process, which the running
  cells' commands are sent (see _Children); a cell another process is running is skipped as
  busy. Returns
  {"ran", "finished_before", "failed", "blocked", "interrupted", "busy": [cell names],
   "stop_signal": the signal that stopped the grid, or 0}.
  """
  cells = select(grid, only)
  check_configs(cells)
  slots = queue.Queue()
  for slot in core_slots(parallel):
    slots.put(slot)
  report = {"ran": [], "finished_before": [], "failed": [], "blocked": [], "interrupted": [], "busy": []}
  lock = threading.Lock()
  stop = threading.Event()  # set by an interrupted cell: no further cell starts

  def run_one(cell: Cell) -> None:
    if stop.is_set():
      return
    if read_result(cell) is not None:
      with lock:
        report["finished_before"].append(cell.name)
      return
    missing = [need for need in cell.needs if read_result(grid.cell(need)) is None]
    if missing:
      with lock:
        report["blocked"].append(cell.name)
      log(f"[blocked] {cell.name}: needs {', '.join(missing)}")
      return
    cores = slots.get()
    try:
      if stop.is_set():  # stopped while this cell waited for cores
        return
      with cell_lock(cell) as locked:
        if not locked or read_result(cell) is not None:  # another call runs it, or just finished it
          with lock:
            report["busy"].append(cell.name)
          log(f"[busy] {cell.name}: another launch/compare.py is running it")
          return
        log(f"[run] {cell.name} on cores {cores}: {cell.command_line()}")
        started = time.time()
        outcome = runner(cell, cores)
        result = _result(cell, outcome, time.time() - started)
        _write_result(cell, result)
      with lock:
        report["ran"].append(cell.name)
      log(f"[done] {cell.name} in {result['wall_seconds']:.0f} s"
          + (f": {cell.metric} dev {result['dev']:.4f}" if cell.kind == "finetune" else ""))
    except CellFailed as error:
      _record_attempt(cell, error, time.time() - started)
      with lock:
        report["interrupted" if error.interrupted else "failed"].append(cell.name)
      if error.interrupted:
        stop.set()
        log(f"[interrupted] {error}; the same command resumes the grid")
      else:
        log(f"[failed] {error}")
    finally:
      slots.put(cores)

  with _passing_on_stop_signals(stop):
    for level in sorted(set(LEVELS.values())):
      todo = [cell for cell in cells if LEVELS[cell.kind] == level]
      with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        try:
          for future in [pool.submit(run_one, cell) for cell in todo]:
            future.result()  # a GridError or a bug in a runner stops the grid, naming it
        except BaseException:  # queued cells must not start while running ones stop
          stop.set()
          raise
      if stop.is_set():
        break
    report["stop_signal"] = _CHILDREN.stop_signal
  return report


def exit_status(report: dict) -> int:
  """launch/compare.py's exit status after run_grid: 128 + the signal that stopped the grid (143 for
  SIGTERM, 130 for SIGINT), as launch/train.py's, so a scheduler (SLURM requeue) or `compare && ...`
  does not take a stopped grid as done; else 1 when a cell failed, was blocked or was stopped; else 0."""
  if report["stop_signal"]:
    return 128 + report["stop_signal"]
  return 1 if report["failed"] or report["blocked"] or report["interrupted"] else 0


def status_lines(grid: Grid, only=()) -> list[str]:
  """One line per selected cell: [done] / [todo], its name and its exact command (--dry_run)."""
  lines = []
  cells = select(grid, only)
  check_configs(cells)
  for cell in cells:
    state = "done" if read_result(cell) is not None else "todo"
    lines.append(f"[{state}] {cell.name}\n    {cell.command_line()}")
  lines += [f"[n/a] {reason}" for reason in grid.not_applicable]
  return lines
