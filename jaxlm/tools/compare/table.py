"""The grid's answer: per (task, body, start), mean and 95% interval over seeds, as Markdown, CSV and a plot.

Each row gives its dev (and test) mean over seeds with Student's t 95% interval, and its
difference from two references of the same task, each with the two-sided p-value of Welch's
t-test over the seeds (jaxlm.tools.compare.statistics): the scratch row of the same body
(does this start pay?) and the FastText baseline (body `fasttext`, start `fasttext`: is the
encoder worth its cost?). The best mean of each task is in bold. Under the table, each row that
reads pre-training gets one line: what its pre-training cells cost and what they bought over
scratch, with the test's p-value. A task's also_metrics (QA's exact match beside its F1) get a
column of their own: their dev mean ± sd at the checkpoints the task's metric picked.
Each row also says what reaching the FastText baseline's dev score cost (CPU-seconds, from the
cells' learning curves, drawn in curves.svg), and the table ends with the reading of the
report's claims (jaxlm.tools.compare.claims).
"""

import math
import os

from jaxlm import metrics
from jaxlm.data import text_files
from jaxlm.tools.compare import claims
from jaxlm.tools.compare import grid as grid_lib
from jaxlm.tools.compare import result_files, statistics
from jaxlm.tools.compare.statistics import mean_and_std

CSV_COLUMNS = ("task", "metric", "test_split", "body", "start", "seeds", "dev_mean", "dev_std", "dev_ci_low",
               "dev_ci_high", "test_mean", "test_std", "test_ci_low", "test_ci_high", "dev_vs_scratch", "vs_scratch_p",
               "dev_vs_baseline", "vs_baseline_p", "wall_seconds_mean", "cpu_seconds_mean", "examples_seen_mean",
               "best_step_mean", "seconds_to_baseline", "reached_baseline")
BASELINE = claims.BASELINE


def collect(grid: grid_lib.Grid) -> tuple[list[dict], list[dict]]:
  """(fine-tuning results, pre-training results) of the grid's finished cells."""
  finetune, pretrain = [], []
  for cell in grid.cells:
    if cell.kind == "trial":  # the search's: search_lines
      continue
    result = result_files.read_grid_result(grid, cell)
    if result is None:
      continue
    if cell.kind == "finetune":
      # The grid's test split as it is now (the cell scored all its splits), so the grid config
      # can name another labelled split for the table without rerunning anything.
      result["test"] = result["splits"][cell.test_split][cell.metric] if cell.test_split else None
      result["test_split"] = cell.test_split
      dev = result["splits"][cell.splits[0]]
      missing = [metric for metric in cell.also_metrics if metric not in dev]
      if missing:
        raise grid_lib.GridError(f"{cell.name}: grid config task.{cell.task}.also_metrics names {missing}, which "
                                 f"its {cell.splits[0]} summary lacks; it has {sorted(dev)}")
      result["also"] = {metric: dev[metric] for metric in cell.also_metrics}
      result["curve"] = learning_curve(cell)
      finetune.append(result)
    else:
      pretrain.append(result)
  return finetune, pretrain


def learning_curve(cell: grid_lib.Cell) -> list[tuple[float, float, float]]:
  """[(examples seen, CPU-seconds, dev metric)] at each of the cell's validations, from its metrics.jsonl
  (the training process's own CPU-seconds: launch/evaluate.py's scoring after it is not in them);
  [] for a cell trained before validations recorded their CPU-seconds."""
  path = os.path.join(cell.workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  return [(record["examples_seen"], record["cpu_seconds"], record[cell.metric]) for record in metrics.read_records(path)
          if record["kind"] == "valid" and not record.get("interrupted") and "cpu_seconds" in record
          and cell.metric in record]


def seconds_to_reach(curves, target: float) -> tuple[float, int]:
  """(mean CPU-seconds at the first validation scoring at least `target`, over the curves that reach it;
  how many reach it). (nan, 0) when none does."""
  reached = [next(seconds for _, seconds, value in curve if value >= target) for curve in curves
             if any(value >= target for _, _, value in curve)]
  return (sum(reached) / len(reached) if reached else math.nan), len(reached)


def rows(grid: grid_lib.Grid, results: list[dict]) -> list[dict]:
  """One row per (task, body, start) with at least one finished seed, in the grid's order."""
  groups = {}
  for result in results:
    groups.setdefault((result["task"], result["body"], result["start"]), []).append(result)
  order = []
  for cell in grid.cells:
    key = (cell.task, cell.body, cell.start)
    if cell.kind == "finetune" and key in groups and key not in order:
      order.append(key)
  table = []
  for task, body, start in order:
    group = groups[(task, body, start)]
    devs = [result["dev"] for result in group]
    dev_mean, dev_std = mean_and_std(devs)
    tests = [result["test"] for result in group if result.get("test") is not None]
    test_mean, test_std = mean_and_std(tests) if tests else (math.nan, math.nan)
    table.append(dict(
        task=task, metric=group[0]["metric"], test_split=group[0].get("test_split", ""), body=body, start=start,
        seeds=len(group), devs=devs,
        dev_mean=dev_mean, dev_std=dev_std, dev_ci=statistics.interval(devs),
        test_mean=test_mean, test_std=test_std,
        test_ci=statistics.interval(tests) if tests else (math.nan, math.nan),
        wall_seconds_mean=mean_and_std([result["wall_seconds"] for result in group])[0],
        cpu_seconds_mean=mean_and_std([result.get("cpu_seconds") or math.nan for result in group])[0],
        examples_seen_mean=mean_and_std([result["examples_seen"] for result in group])[0],
        best_step_mean=mean_and_std([result["best_step"] for result in group])[0],
        # {metric: (mean, sd)} of the task's also_metrics, on dev at the same checkpoints
        also={metric: mean_and_std([result["also"][metric] for result in group])
              for metric in group[0].get("also", {})},
        curves=[result.get("curve", []) for result in group]))
  by_key = {(row["task"], row["body"], row["start"]): row for row in table}
  for row in table:
    # The cost to reach a given score: CPU-seconds until a validation first scores the FastText
    # baseline's mean dev score (the cheapest row's final answer), over the seeds that reach it.
    # (nan, None): no target (the task has no baseline row) or no learning curves to read.
    baseline = by_key.get((row["task"], *BASELINE))
    row["seconds_to_baseline"], row["reached_baseline"] = (
        seconds_to_reach(row["curves"], baseline["dev_mean"]) if baseline is not None and all(row["curves"])
        else (math.nan, None))
  for row in table:
    for name, (body, start) in (("scratch", (row["body"], "scratch")), ("baseline", BASELINE)):
      reference = by_key.get((row["task"], body, start))
      if reference is None or reference is row:
        row[f"dev_vs_{name}"], row[f"vs_{name}_p"] = math.nan, math.nan
      else:
        row[f"dev_vs_{name}"] = row["dev_mean"] - reference["dev_mean"]
        row[f"vs_{name}_p"] = statistics.welch(row["devs"], reference["devs"])
  return table


def _number(value: float, std: float = math.nan) -> str:
  if value is None or math.isnan(value):
    return "-"
  return f"{value:.3f}" + (f" ± {std:.3f}" if not math.isnan(std) else "")


def _with_interval(value: float, bounds: tuple[float, float]) -> str:
  """"0.254 [0.241, 0.267]": a mean and its interval ("-" for no value, no interval for one seed)."""
  if value is None or math.isnan(value):
    return "-"
  return f"{value:.3f}" + ("" if math.isnan(bounds[0]) else f" [{bounds[0]:.3f}, {bounds[1]:.3f}]")


def _difference(difference: float, p: float) -> str:
  """"+0.060 (p 0.408)"; bold when p < statistics.ALPHA."""
  if math.isnan(difference):
    return ""
  text = f"{difference:+.3f} ({statistics.p_text(p)})"
  return f"**{text}**" if p < statistics.ALPHA else text


def pretraining_cost(pretrain: list[dict]) -> str:
  """"pre-training took X CPU-minutes (Y wall-minutes): ..." over the finished pre-training cells."""
  if not pretrain:
    return "No pre-training cells finished (scratch starts only)."
  cpu = sum(result.get("cpu_seconds") or 0.0 for result in pretrain) / 60
  wall = sum(result["wall_seconds"] for result in pretrain) / 60
  parts = [f"{result['name'].split('/', 1)[1]} {(result.get('cpu_seconds') or 0.0) / 60:.1f}" for result in pretrain]
  return (f"Pre-training took {cpu:.1f} CPU-minutes ({wall:.1f} wall-minutes) over {len(pretrain)} "
          f"run{'s' if len(pretrain) > 1 else ''} "
          f"(CPU-minutes each: {', '.join(parts)}).")


def bought(grid: grid_lib.Grid, table: list[dict], pretrain: list[dict]) -> list[str]:
  """Per row that reads pre-training: "pre-training took X CPU-minutes and bought Y" over the scratch
  row of its task and body (the cost of every pre-training cell it reads, its FastText start included)."""
  cpu_minutes = {result["name"]: (result.get("cpu_seconds") or 0.0) / 60 for result in pretrain}
  first_cell = {}
  for cell in grid.cells:
    first_cell.setdefault((cell.task, cell.body, cell.start), cell.name)
  lines = []
  for row in table:
    if math.isnan(row["dev_vs_scratch"]):
      continue
    chain = [name for name in grid.needs_of(first_cell[(row["task"], row["body"], row["start"])])
             if grid.cell(name).kind in ("fasttext", "pretrain")]
    if not chain or any(name not in cpu_minutes for name in chain):
      continue
    p = row["vs_scratch_p"]
    verdict = ("" if p < statistics.ALPHA else
               f": not separable from seed noise at p < {statistics.ALPHA}" if not math.isnan(p) else
               ": untested, fewer than 2 seeds")
    lines.append(f"- {row['task']}, {row['body']}, {row['start']}: pre-training took "
                 f"{sum(cpu_minutes[name] for name in chain):.1f} CPU-minutes "
                 f"({' + '.join(name.split('/', 1)[1] for name in chain)}) and bought "
                 f"{row['dev_vs_scratch']:+.3f} dev {row['metric']} over scratch "
                 f"(Welch's t-test, {statistics.p_text(p)}{verdict}).")
  return lines


def search_lines(grid: grid_lib.Grid) -> list[str]:
  """The tuning: the search space, then per row its finished trials, their CPU cost, and the best
  trial's dev score and settings (the settings its seed cells ran with). [] for a grid without a search."""
  if grid.search is None:
    return []
  search = grid.search
  space = "; ".join(f"{name}: {spec['kind']} " + (f"{tuple(spec['choices'])}" if spec["kind"] == "choice"
                                                   else f"{spec['low']:g}..{spec['high']:g}")
                    for name, spec in search.space.items())
  rows = list(dict.fromkeys(cell.search_row for cell in grid.cells if cell.kind == "trial"))
  cost = {}
  for cell in grid.cells:
    if cell.kind == "trial":
      result = result_files.read_grid_result(grid, cell)
      cost[cell.search_row] = cost.get(cell.search_row, 0.0) + ((result or {}).get("cpu_seconds") or 0.0)
  lines = [f"Tuning: {search.trials} trials per row (Optuna TPE, the first {search.startup_trials} at random), "
           f"trained with seed {search.seed} and scored on dev; the row's seeds then ran with its best trial's "
           f"settings. Space: {space}."]
  for row, line in zip(rows, search.summary(rows)):
    lines.append(f"{line} ({cost[row] / 60:.1f} CPU-minutes of trials)")
  return lines


def code_versions(results: list[dict]) -> str:
  """"Code: 2c31993 (13 cells), 5ab12cd (40 cells)": which commit ran how many finished cells."""
  counts = {}
  for result in results:
    version = result.get("code") or "not recorded"
    counts[version] = counts.get(version, 0) + 1
  return "Code: " + ", ".join(f"{version} ({count} cell{'s' if count > 1 else ''})"
                              for version, count in counts.items()) + "."


def _reached(row: dict) -> str:
  """"41 (5/5)": mean CPU-seconds to the baseline's dev mean over the seeds that reached it, and how many did."""
  if row["reached_baseline"] is None:
    return "-"
  if not row["reached_baseline"]:
    return f"never (0/{row['seeds']})"
  return f"{row['seconds_to_baseline']:.0f} ({row['reached_baseline']}/{row['seeds']})"


def _also(row: dict) -> str:
  return "; ".join(f"{metric} {_number(mean, std)}" for metric, (mean, std) in row["also"].items())


def markdown(table: list[dict], pretrain: list[dict], results: list[dict] = (), bought_lines=(), tuning=(),
             reading=()) -> str:
  also = any(row["also"] for row in table)  # a column only for grids with also_metrics
  lines = [pretraining_cost(pretrain), "",
           "| task (metric) | body | start | seeds | dev mean [95% CI] | test mean [95% CI] | "
           + ("other dev metrics, mean ± sd | " if also else "") + "dev vs scratch | dev vs FastText baseline | "
           "wall / CPU s per cell | examples seen | CPU s to the baseline's dev |",
           "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if also else "")]
  best = {}
  for row in table:
    if row["task"] not in best or row["dev_mean"] > best[row["task"]]:
      best[row["task"]] = row["dev_mean"]
  for row in table:
    dev = _with_interval(row["dev_mean"], row["dev_ci"])
    if row["dev_mean"] == best[row["task"]]:
      dev = f"**{dev}**"
    lines.append(f"| {row['task']} ({row['metric']}) | {row['body']} | {row['start']} | {row['seeds']} | {dev} | "
                 f"{_with_interval(row['test_mean'], row['test_ci'])} | " + (f"{_also(row)} | " if also else "")
                 + f"{_difference(row['dev_vs_scratch'], row['vs_scratch_p'])} | "
                 f"{_difference(row['dev_vs_baseline'], row['vs_baseline_p'])} | {row['wall_seconds_mean']:.0f} / "
                 f"{row['cpu_seconds_mean']:.0f} | "
                 f"{row['examples_seen_mean']:.0f} | {_reached(row)} |")
  test_splits = dict.fromkeys(f"{row['task']}: {row['test_split']}" for row in table if row["test_split"])
  lines += ["", f"test: the best checkpoint (by dev) on a labelled split that picked nothing "
            f"({'; '.join(test_splits) or 'none'}).",
            f"CI: Student's t {statistics.LEVEL:.0%} interval for the mean over seeds. dev vs scratch / vs FastText "
            "baseline: the difference of dev means from the same task's scratch row of the same body / from its "
            f"{BASELINE[0]} body with {BASELINE[1]} start, with the two-sided p-value of Welch's t-test over seeds "
            f"(bold: p < {statistics.ALPHA}; no correction for the table's many comparisons). Bold dev: the best dev "
            "mean of the task (higher is better for every metric here). CPU s to the baseline's dev: the training "
            "process's CPU-seconds (start, compile and validations included) until a validation first scored the "
            "FastText baseline row's dev mean, averaged over the seeds that reached it (how many did); - where the "
            "task has no baseline row or the cells no learning curves."]
  if bought_lines:
    lines += ["", "What the pre-training bought, per row that reads it:", *bought_lines]
  if reading:
    lines += ["", *reading]
  if tuning:
    lines += ["", *tuning]
  if results:
    lines += ["", code_versions(results)]
  return "\n".join(lines) + "\n"


def write_csv(table: list[dict], path: str) -> None:
  """CSV_COLUMNS, then dev_<metric>_mean and _std per also_metrics key of any row (empty where a task has none)."""
  also = list(dict.fromkeys(metric for row in table for metric in row["also"]))
  header = list(CSV_COLUMNS) + [f"dev_{metric}_{stat}" for metric in also for stat in ("mean", "std")]
  flat = [{**row, "dev_ci_low": row["dev_ci"][0], "dev_ci_high": row["dev_ci"][1],
           "test_ci_low": row["test_ci"][0], "test_ci_high": row["test_ci"][1]} for row in table]
  text_files.write_csv(path, header, ([row[key] for key in CSV_COLUMNS]
                                      + [row["also"].get(metric, ("", ""))[index] for metric in also for index in (0, 1)]
                                      for row in flat))


def plot(table: list[dict], path: str) -> None:
  """One panel per task: dev metric (mean, error bar = the 95% interval over seeds) per start, one series per body."""
  import matplotlib
  matplotlib.use("Agg")  # files only, no display
  from matplotlib import pyplot

  tasks = list(dict.fromkeys(row["task"] for row in table))
  # One colour per body in every panel, named once in a legend beside them (not over the points).
  colours = {body: f"C{index}" for index, body in enumerate(dict.fromkeys(row["body"] for row in table))}
  figure, axes = pyplot.subplots(1, len(tasks), figsize=(4.5 * len(tasks) + 1.2, 3.6), squeeze=False)
  for axis, task in zip(axes[0], tasks):
    task_rows = [row for row in table if row["task"] == task]
    # In the grid's order of starts (jaxlm.tools.compare.grid.STARTS), not the order rows first use them,
    # so that each body's line runs left to right (RuCoLA's bpe_fasttext row came before mlm).
    # A start along a pre-training ("mlm@1000") comes before the same pre-training's best checkpoint.
    order = list(grid_lib.STARTS)

    def place(start):
      kind, step = grid_lib.start_kind(start)
      return order.index(kind), math.inf if step is None else step

    starts = sorted(dict.fromkeys(row["start"] for row in task_rows), key=place)
    bodies = list(dict.fromkeys(row["body"] for row in task_rows))
    for index, body in enumerate(bodies):
      points = sorted((starts.index(row["start"]), row["dev_mean"], row["dev_ci"]) for row in task_rows
                      if row["body"] == body)
      offset = (index - (len(bodies) - 1) / 2) * 0.08  # bodies side by side, so error bars do not overlap
      below = [0.0 if math.isnan(low) else mean - low for _, mean, (low, _) in points]
      above = [0.0 if math.isnan(high) else high - mean for _, mean, (_, high) in points]
      axis.errorbar([x + offset for x, _, _ in points], [y for _, y, _ in points], yerr=[below, above], marker="o",
                    capsize=3, linestyle="-", color=colours[body], label=body)
    axis.set_xticks(range(len(starts)), starts, rotation=20, ha="right")  # six labels do not fit level
    axis.set_title(task)
    axis.set_ylabel(f"dev {task_rows[0]['metric']} (mean, 95% CI over seeds)")
    axis.grid(alpha=0.3)
  handles = [matplotlib.lines.Line2D([], [], color=colour, marker="o") for colour in colours.values()]
  figure.legend(handles, list(colours), title="body", loc="center right", fontsize="small")
  figure.tight_layout(rect=(0, 0, 1 - 1.2 / figure.get_figwidth(), 1))
  figure.savefig(path)
  pyplot.close(figure)


def plot_curves(table: list[dict], path: str) -> None:
  """Learning curves: one column per task, dev metric against examples seen (top) and against the
  training process's CPU-seconds (bottom); every seed a thin line, one colour per (body, start) row."""
  import matplotlib
  matplotlib.use("Agg")  # files only, no display
  from matplotlib import pyplot

  tasks = list(dict.fromkeys(row["task"] for row in table))
  figure, axes = pyplot.subplots(2, len(tasks), figsize=(5 * len(tasks) + 2.5, 7), squeeze=False)
  labels = list(dict.fromkeys(f"{row['body']}/{row['start']}" for row in table))
  colours = {label: pyplot.get_cmap("tab20")(index % 20) for index, label in enumerate(labels)}
  for column, task in enumerate(tasks):
    for row in (row for row in table if row["task"] == task):
      colour = colours[f"{row['body']}/{row['start']}"]
      for curve in row["curves"]:
        if curve:
          examples, seconds, values = zip(*curve)
          axes[0][column].plot(examples, values, color=colour, linewidth=0.8, alpha=0.8)
          axes[1][column].plot(seconds, values, color=colour, linewidth=0.8, alpha=0.8)
    metric = next(row["metric"] for row in table if row["task"] == task)
    axes[0][column].set_title(task)
    for axis, label in ((axes[0][column], "examples seen"), (axes[1][column], "CPU-seconds of training")):
      axis.set_xlabel(label)
      axis.set_ylabel(f"dev {metric}")
      axis.grid(alpha=0.3)
    axes[1][column].set_xscale("log")
  handles = [matplotlib.lines.Line2D([], [], color=colour) for colour in colours.values()]
  figure.legend(handles, labels, title="body/start", loc="center right", fontsize="small")
  figure.tight_layout(rect=(0, 0, 1 - 2.5 / figure.get_figwidth(), 1))
  figure.savefig(path)
  pyplot.close(figure)


def write_all(grid: grid_lib.Grid, workdir: str) -> dict:
  """table.md, table.csv and table.svg in the grid's workdir; returns {kind: path}."""
  finetune, pretrain = collect(grid)
  table = rows(grid, finetune)
  os.makedirs(workdir, exist_ok=True)
  paths = {kind: os.path.join(workdir, f"table.{kind}") for kind in ("md", "csv", "svg")}
  text_files.write_text(paths["md"], markdown(table, pretrain, pretrain + finetune, bought(grid, table, pretrain),
                                              search_lines(grid), claims.reading(table)))
  write_csv(table, paths["csv"])
  if table:
    plot(table, paths["svg"])
  else:
    paths.pop("svg")
  if any(curve for row in table for curve in row["curves"]):
    paths["curves"] = os.path.join(workdir, "curves.svg")
    plot_curves(table, paths["curves"])
  return paths
