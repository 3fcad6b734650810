"""Runs a grid: each selected cell without a result, `parallel` at once, level by level, pre-training first."""

import concurrent.futures
import queue
import threading
import time

from jaxlm.tools.compare import cell_configs, processes, result_files
from jaxlm.tools.compare import grid as grid_lib


def run_grid(grid: grid_lib.Grid, *, parallel: int = 1, only=(), runner=processes.run_subprocess, log=print,
             slots=None) -> dict:
  """Runs every selected cell that has no result, `parallel` at a time, level by level.

  A cell whose needed cell has no result (it failed) is skipped as blocked; a cell stopped by
  a signal stops the grid, and so does a SIGTERM or SIGINT to this process, which the running
  cells' commands are sent (see processes.Children: one per call, handed to the runner as
  runner(cell, cores, children)); a cell another process is running is skipped as busy. Returns
  {"ran", "finished_before", "failed", "blocked", "interrupted", "busy": [cell names],
   "stop_signal": the signal that stopped the grid, or 0}.
  slots: what each of the `parallel` concurrent cells is given as its cores; None = this machine's
  cores dealt into `parallel` groups (processes.core_slots). A cluster runner places its jobs itself.
  """
  selected = grid_lib.select(grid, only)
  cell_configs.check_configs(selected, grid.search)
  free = queue.Queue()  # the slots no cell holds
  for slot in processes.core_slots(parallel) if slots is None else slots:
    free.put(slot)
  report = {"ran": [], "finished_before": [], "failed": [], "blocked": [], "interrupted": [], "busy": []}
  lock = threading.Lock()
  stop = threading.Event()  # set by an interrupted cell: no further cell starts
  children = processes.Children()

  def finished(cell: grid_lib.Cell) -> bool:
    return result_files.read_grid_result(grid, cell) is not None

  def run_one(cell: grid_lib.Cell) -> None:
    if stop.is_set():
      return
    if finished(cell):
      with lock:
        report["finished_before"].append(cell.name)
      return
    missing = [need for need in cell.needs if not finished(grid.cell(need))]
    if not missing and cell.kind == "finetune" and result_files.settled(grid, cell) is None:
      missing = [f"a trial of its row that did not fail ({cell.search_row}'s trials all failed)"]
    if missing:
      with lock:
        report["blocked"].append(cell.name)
      log(f"[blocked] {cell.name}: needs {', '.join(missing)}")
      return
    cores = free.get()
    try:
      if stop.is_set():  # stopped while this cell waited for cores
        return
      with processes.cell_lock(cell) as locked:
        if not locked or finished(cell):  # another call runs it, or just finished it
          with lock:
            report["busy"].append(cell.name)
          log(f"[busy] {cell.name}: another launch/compare.py is running it")
          return
        if cell.search_row:  # its settings: a trial's asked now (or again, resumed), a seed cell's the row's best
          cell = grid.search.begin(cell)
        log(f"[run] {cell.name} on cores {cores}: {cell.command_line()}")
        started = time.time()
        try:
          outcome = runner(cell, cores, children)
        except processes.CellFailed as error:
          if cell.kind != "trial" or error.interrupted:
            raise
          # A trial that fails (its settings diverged, say) is a finished trial without a score.
          grid.search.tell(cell, None)
          result_files.write_result(cell, result_files.failed_trial_result(cell, error, time.time() - started))
          log(f"[trial failed] {error}")
          with lock:
            report["ran"].append(cell.name)
          return
        result = result_files.build_result(cell, outcome, time.time() - started)
        if cell.kind == "trial":  # told before the result is written: a kill between the two reruns the trial
          grid.search.tell(cell, result["dev"])
        result_files.write_result(cell, result)
      with lock:
        report["ran"].append(cell.name)
      log(f"[done] {cell.name} in {result['wall_seconds']:.0f} s"
          + (f": {cell.metric} dev {result['dev']:.4f}" if cell.kind in grid_lib.SCORED else ""))
    except processes.CellFailed as error:
      result_files.record_attempt(cell, error, time.time() - started)
      with lock:
        report["interrupted" if error.interrupted else "failed"].append(cell.name)
      if error.interrupted:
        stop.set()
        log(f"[interrupted] {error}; the same command resumes the grid")
      else:
        log(f"[failed] {error}")
    finally:
      free.put(cores)

  with children.passing_on_stop_signals(stop):
    for level in sorted(set(grid_lib.LEVELS.values())):
      todo = [cell for cell in selected if grid_lib.LEVELS[cell.kind] == level]
      with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        try:
          for future in [pool.submit(run_one, cell) for cell in todo]:
            future.result()  # a GridError or a bug in a runner stops the grid, naming it
        except BaseException:  # queued cells must not start while running ones stop
          stop.set()
          raise
      if stop.is_set():
        break
    report["stop_signal"] = children.stop_signal
  return report


def exit_status(report: dict) -> int:
  """launch/compare.py's exit status after run_grid: 128 + the signal that stopped the grid (143 for
  SIGTERM, 130 for SIGINT), as launch/train.py's, so a job scheduler (SLURM requeue) or `compare && ...`
  does not take a stopped grid as done; else 1 when a cell failed, was blocked or was stopped; else 0."""
  if report["stop_signal"]:
    return 128 + report["stop_signal"]
  return 1 if report["failed"] or report["blocked"] or report["interrupted"] else 0


def status_lines(grid: grid_lib.Grid, only=()) -> list[str]:
  """One line per selected cell: [done] / [todo], its name and its exact command (--dry_run)."""
  lines = []
  selected = grid_lib.select(grid, only)
  cell_configs.check_configs(selected, grid.search)
  for cell in selected:
    as_run = result_files.settled(grid, cell)
    if as_run is None:  # a trial not asked yet, a seed cell of a row still searching
      lines.append(f"[todo] {cell.name}\n    {cell.command_line()}  # + the settings its row's search decides")
      continue
    state = "done" if result_files.read_result(as_run) is not None else "todo"
    lines.append(f"[{state}] {cell.name}\n    {as_run.command_line()}")
  lines += [f"[n/a] {reason}" for reason in grid.not_applicable]
  return lines
