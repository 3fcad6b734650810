"""A cell's result.json and attempts.jsonl: what a finished cell scored and cost, checked against the grid.

A cell is finished when its workdir holds result.json: the runner writes it (atomically)
only after the command exited 0 and the best checkpoint was scored on the task's splits.
A killed cell has no result.json and runs again; launch/train.py resumes it from its
latest checkpoint (the same losses as an uninterrupted run), so nothing is trained twice
but the steps after that checkpoint. A result.json made by another command (the grid
config changed), or by the same command when it now builds another config (a default in
the config file changed), is an error naming the workdir, never silently reused.
"""

import json
import os
import subprocess
import time

from jaxlm.tools.compare import cell_configs, processes
from jaxlm.tools.compare import grid as grid_lib

RESULT_FILE = "result.json"
ATTEMPTS_FILE = "attempts.jsonl"  # one line per stopped or failed attempt: its wall and CPU seconds


def settled(grid: grid_lib.Grid, cell: grid_lib.Cell) -> grid_lib.Cell | None:
  """The cell as it runs: with its row's tuned settings (jaxlm.tools.compare.search), or None while
  they are not decided; a cell of an untuned row as it is."""
  return grid.search.settled(cell) if grid.search is not None and cell.search_row else cell


def read_grid_result(grid: grid_lib.Grid, cell: grid_lib.Cell) -> dict | None:
  """read_result of the cell as it runs (settled); None when it has not finished or cannot start yet."""
  as_run = settled(grid, cell)
  return None if as_run is None else read_result(as_run)


def read_result(cell: grid_lib.Cell) -> dict | None:
  """The cell's result.json, or None when it has not finished."""
  path = os.path.join(cell.workdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as handle:
    result = json.load(handle)
  if result.get("command") != cell.command_line():
    raise grid_lib.GridError(f"{path} was made by `{result.get('command')}` but the grid now runs "
                             f"`{cell.command_line()}`: delete {cell.workdir} to run the cell again, or put the grid "
                             "config back")
  _check_config_unchanged(cell, path)
  return result


def _check_config_unchanged(cell: grid_lib.Cell, result_path: str) -> None:
  """The same command can build another config when a default in the config file changed (say, a
  body's learning rate): a result trained otherwise is refused, as launch/train.py refuses to
  resume such a workdir (checkpoint.signature: seed, model, task, data, optim, batch and steps)."""
  from jaxlm import checkpoint
  if cell.kind == "fasttext" or not os.path.exists(os.path.join(cell.workdir, checkpoint.CONFIG_FILE)):
    return
  differences = checkpoint.workdir_differences(cell.workdir, cell_configs.load_config(cell.config, cell.overrides))
  if differences:
    raise grid_lib.GridError(
        f"{result_path}: the cell's command is unchanged, but it now builds another config than the one "
        f"its result was trained with ({checkpoint.describe(differences)}; a default in "
        f"{cell.config.partition(':')[0]} changed). Move {cell.workdir} aside to run the cell again "
        f"with today's config, or put the config back.")


def write_result(cell: grid_lib.Cell, result: dict) -> None:
  from jaxlm.data import text_files
  text_files.write_text(os.path.join(cell.workdir, RESULT_FILE), json.dumps(result, indent=1))  # whole or none


def _steps_and_batch(cell: grid_lib.Cell) -> tuple[int | None, dict]:
  """(the last trained step, the batch's shape) of a trained cell, from its metrics.jsonl and config.json.
  The last step is the last record's: a run stopped by patience validates a step it never logged."""
  from jaxlm import checkpoint, metrics
  config = checkpoint.load_config(cell.workdir)
  records = metrics.read_records(os.path.join(cell.workdir, "metrics.jsonl"))
  steps = [record["step"] for record in records if record["kind"] in ("train", "valid")]
  if not steps:
    raise grid_lib.GridError(f"{cell.workdir}/metrics.jsonl has no train or valid record: the cell did not train")
  return int(max(steps)), {"batch_size": config.train.batch_size, "seq_len": config.train.seq_len}


def code_version() -> str | None:
  """The commit of the code that runs the cells (`git describe --always --dirty`: "-dirty" when the
  checkout has uncommitted changes), or None outside a git checkout. A grid run over several
  sittings can run its cells on different code; each result says which."""
  try:
    described = subprocess.run(["git", "-C", grid_lib.ROOT, "describe", "--always", "--dirty", "--abbrev=7"],
                               capture_output=True, text=True, check=False)
  except OSError:  # no git on this machine
    return None
  if described.returncode != 0:  # not a git checkout (an unpacked archive)
    return None
  return described.stdout.strip() or None


def record_attempt(cell: grid_lib.Cell, error: processes.CellFailed, wall_seconds: float) -> None:
  """Appends a stopped or failed attempt's cost to the cell's attempts file (its result adds them)."""
  with open(os.path.join(cell.workdir, ATTEMPTS_FILE), "a", encoding="utf-8") as handle:
    handle.write(json.dumps({"exit_code": error.exit_code, "wall_seconds": wall_seconds,
                             "cpu_seconds": error.cpu_seconds, "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def _earlier_attempts(cell: grid_lib.Cell) -> list[dict]:
  path = os.path.join(cell.workdir, ATTEMPTS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as handle:
    return [json.loads(line) for line in handle if line.strip()]


def failed_trial_result(cell: grid_lib.Cell, error: processes.CellFailed, wall_seconds: float) -> dict:
  """The result.json of a trial whose command failed: a finished trial of the search, without a score."""
  return {"name": cell.name, "kind": cell.kind, "command": cell.command_line(), "code": code_version(),
          "wall_seconds": wall_seconds, "cpu_seconds": error.cpu_seconds, "failed": error.exit_code, "dev": None,
          "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def build_result(cell: grid_lib.Cell, outcome: dict, wall_seconds: float) -> dict:
  """The result.json of a cell whose runner just returned `outcome` after `wall_seconds`."""
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
