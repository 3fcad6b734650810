"""Runs a grid of fine-tuning runs (and the pre-training they start from), then writes its table.

  python launch/compare.py --grid=configs/compare_ru.py --workdir=runs/compare_ru --parallel=2
  python launch/compare.py --grid=configs/compare_ru.py:small --workdir=runs/compare_ru_small
  python launch/compare.py --grid=configs/compare_ru.py --workdir=runs/compare_ru --dry_run
  python launch/compare.py --grid=configs/compare_ru.py --workdir=runs/compare_ru --only='rucola/*'
  python launch/compare.py --grid=configs/compare_ru.py --workdir=/shared/runs/compare_ru --cluster=slurm \
      --parallel=64 --cluster_parameters=slurm_partition=cpu,cpus_per_task=2,timeout_min=240

Finished cells (a result.json in their workdir) are skipped, so the same command resumes a
stopped grid; an interrupted cell resumes from its checkpoint. SIGTERM or Ctrl-C stops the grid
cleanly: each running cell gets the signal once, saves its checkpoint and records what its
attempt cost, the table is written, and the grid exits with 128 + the signal number (143 for
SIGTERM, 130 for Ctrl-C), as launch/train.py does; a failed cell makes it exit 1. The table
(table.md, table.csv, table.svg in --workdir) is rewritten from every finished cell after
each call; --table_only writes it without running anything. Cells are listed with their
exact commands in --workdir/commands.sh. The cells share jax's persistent compilation cache in
--workdir/compilation_cache (a row's seeds compile their programs once). --cluster=slurm runs each
cell as a SLURM job through submitit (job files in --workdir/submitit), --parallel at once.
"""

import functools
import os
import sys

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags
from ml_collections import config_flags

from jaxlm import errors
from jaxlm.tools.compare import grid as grid_lib
from jaxlm.tools.compare import cluster, processes, scheduler, table

_GRID = config_flags.DEFINE_config_file("grid", None, "Grid config, e.g. configs/compare_ru.py[:small].",
                                        lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where every cell's workdir, and the table, go.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Cells run at once, each pinned to its share of the cores.")
_ONLY = flags.DEFINE_list("only", [], "Cell name patterns (fnmatch, e.g. 'rucola/*/scratch/*'); the cells they "
                          "need run too.")
_CLUSTER = flags.DEFINE_string("cluster", "", "Run each cell as a submitit job: slurm, or local (submitit's local "
                               "executor); empty = processes on this machine's cores.")
_CLUSTER_PARAMETERS = flags.DEFINE_list("cluster_parameters", [], "submitit parameters as key=value, e.g. "
                                        "slurm_partition=cpu,cpus_per_task=2,timeout_min=240.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "List the cells, their state and exact commands; run nothing.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Write the table from the finished cells; run nothing.")
flags.mark_flags_as_required(["grid", "workdir"])


@errors.one_line("launch/compare.py")
def main(argv):
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments: {argv[1:]}")
  grid = grid_lib.expand(_GRID.value, _WORKDIR.value)
  # One compilation cache for the grid: a row's cells (seeds, starts of one shape) compile once.
  compilation_cache = os.path.abspath(os.path.join(_WORKDIR.value, "compilation_cache"))
  runner, slots = functools.partial(processes.run_subprocess, compilation_cache=compilation_cache), None
  if _CLUSTER.value:  # checked before anything is written
    executor = cluster.make_executor(_CLUSTER.value, os.path.join(_WORKDIR.value, "submitit"),
                                     cluster.parse_parameters(_CLUSTER_PARAMETERS.value))
    runner, slots = cluster.SubmititRunner(executor, compilation_cache), [[]] * _PARALLEL.value
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, "commands.sh"), "w", encoding="utf-8") as handle:
    handle.write("# Every cell of the grid, in run order (launch/compare.py runs them and scores each\n"
                 "# fine-tuning cell with launch/evaluate.py --best)\n")
    # A tuned row's cells get their settings when they start (--dry_run shows those decided so far).
    handle.writelines(f"{cell.command_line()}  # {cell.name}" + (" + its row's tuned settings" if cell.search_row else "")
                      + "\n" for cell in grid.cells)
  if _DRY_RUN.value:
    print("\n".join(scheduler.status_lines(grid, _ONLY.value)))
    return
  report = None
  if not _TABLE_ONLY.value:
    report = scheduler.run_grid(grid, parallel=_PARALLEL.value, only=_ONLY.value, runner=runner, slots=slots,
                                log=lambda line: print(line, flush=True))  # progress in a redirected log too
    print(" ".join(f"{key}: {len(names)}" for key, names in report.items() if key != "stop_signal"))
  paths = table.write_all(grid, _WORKDIR.value)
  print(open(paths["md"], encoding="utf-8").read())
  print("written: " + ", ".join(paths.values()))
  if report is not None:
    sys.exit(scheduler.exit_status(report))  # a job scheduler should not take a stopped or failed grid as done


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/compare.py", "grid"))
