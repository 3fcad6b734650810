"""One self-contained HTML page comparing runs: their curves, final and best metrics, config differences.

  runs = [report.load_run("transformer", "runs/quickstart"), report.load_run("LSTM", "runs/lstm")]
  html = report.render(runs, title="quickstart vs LSTM")

Everything comes from what a workdir holds (jaxlm/training/loop.py writes both): metrics.jsonl's
"train" and "valid" records and config.json. The metric a run is judged by, and whether
lower or higher is better, is its task's (jaxlm.tasks: perplexity for language models,
MCC, accuracy or F1 for fine-tuning), as its best checkpoint was chosen. Figures are PNGs
in the page (base64), drawn by jaxlm.tools.plot, so the page is one file that opens anywhere.
"""

import base64
import dataclasses
import html
import json
import math
import os

from jaxlm import checkpoint, errors, metrics
from jaxlm.tools import plot

# The wall-time axis: seconds in training steps (evaluation and saving excluded).
TIME_KEY = "training_seconds"
# Curves beyond the loss and the task's metric: (record key, axis label, log scale), from "train" records.
TRAINING_CURVES = (("learning_rate", "learning rate", False),
                   ("grad_norm", "gradient norm (mean over the log interval)", False),
                   ("tokens_per_second", "tokens/s", False))
LOG_SCALE_METRICS = ("perplexity",)  # spans orders of magnitude early in training


@dataclasses.dataclass
class Run:
  name: str
  workdir: str
  config: dict  # config.json as saved
  records: list  # metrics.jsonl's records in step order (jaxlm.metrics.read_records)
  task: str
  best_metric: str  # a key of the task's "valid" records
  best_mode: str  # "min" or "max"
  clock_restarts: list  # steps after which a resumed process's clock was joined on (metrics.read_metrics)

  def of_kind(self, kind: str) -> list:
    return [record for record in self.records if record["kind"] == kind]

  def has(self, key: str, kind: str | None = None) -> bool:
    return any(key in record for record in self.records if kind is None or record["kind"] == kind)


def load_run(name: str, workdir: str) -> Run:
  """A run's records and config; errors name the run, the workdir and what is missing."""
  if not os.path.isdir(workdir):
    raise errors.MissingFileError(f"run {name!r}: workdir {workdir} does not exist")
  try:  # first: a folder that is no jaxlm run is named as such
    config = checkpoint.load_config(workdir)
  except errors.UserError as error:
    raise type(error)(f"run {name!r}: {error}") from error
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(metrics_path):
    raise errors.MissingFileError(f"run {name!r}: {metrics_path} does not exist: the run has not logged a step yet "
                                  f"(launch/train.py writes it every train.log_every steps)")
  records, clock_restarts = metrics.read_metrics(metrics_path)
  records = [record for record in records if record["kind"] in ("train", "valid")]
  if not records:
    raise errors.WorkdirError(f"run {name!r}: {metrics_path} has no train or valid records yet")
  try:
    run = checkpoint.load_run(workdir)  # the task and its best metric, as the run recorded them
  except errors.UserError as error:
    raise type(error)(f"run {name!r}: {error}") from error
  task, best_metric, best_mode = run["task"], run["best_metric"], run["best_mode"]
  return Run(name=name, workdir=workdir, config=json.loads(config.to_json()), records=records, task=task,
             best_metric=best_metric, best_mode=best_mode, clock_restarts=clock_restarts)


def load_runs(specs: list[str]) -> list[Run]:
  """load_run for each 'NAME=WORKDIR'; names must differ (they label the curves and columns)."""
  if not specs:
    raise errors.ConfigError("give at least one --run=NAME=WORKDIR")
  named = [plot.parse_run(spec) for spec in specs]
  names = [name for name, _ in named]
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise errors.ConfigError(f"run names must differ; repeated: {repeated}")
  return [load_run(name, workdir) for name, workdir in named]


# ----------------------------------------------------------------------------
# Numbers: final and best.


def best_record(run: Run) -> dict | None:
  """The valid record with the best finite task metric (the earliest of equals), as the best
  checkpoint is chosen: a validation made off schedule on a stop ("interrupted") only when
  there is no other."""
  sign = 1.0 if run.best_mode == "min" else -1.0
  scored = [record for record in run.of_kind("valid")
            if isinstance(record.get(run.best_metric), (int, float)) and math.isfinite(record[run.best_metric])]
  scored = [record for record in scored if not record.get("interrupted")] or scored
  return min(scored, key=lambda record: sign * record[run.best_metric]) if scored else None


def last_with(run: Run, kind: str, key: str) -> dict | None:
  found = [record for record in run.of_kind(kind) if key in record]
  return found[-1] if found else None


def summary_rows(runs: list[Run]) -> list[dict]:
  """Per run: {column: (text, value or None)}; value is the exact float shown, for machines (data-value)."""
  rows = []
  for run in runs:
    best = best_record(run)
    final_valid = run.of_kind("valid")[-1] if run.of_kind("valid") else None
    final_train = last_with(run, "train", "loss")
    speeds = [record["tokens_per_second"] for record in run.of_kind("train") if "tokens_per_second" in record]
    seconds = [record[TIME_KEY] for record in run.records if TIME_KEY in record]
    arrow = "lower" if run.best_mode == "min" else "higher"
    rows.append({
        "run": (run.name, None),
        "task": (run.task, None),
        "metric": (f"{run.best_metric} ({arrow} is better)", None),
        "last step": (str(run.records[-1]["step"]), None),
        "training time": (_duration(max(seconds)) if seconds else "not recorded", max(seconds) if seconds else None),
        "mean tokens/s": (f"{sum(speeds) / len(speeds):,.0f}" if speeds else "not recorded",
                          sum(speeds) / len(speeds) if speeds else None),
        "final train loss": _value(final_train, "loss"),
        "final valid loss": _value(final_valid, "loss"),
        "final valid metric": _value(final_valid, run.best_metric),
        "best valid metric": _value(best, run.best_metric),
        "best at step": (str(best["step"]), None) if best else ("no validation", None),
    })
  return rows


def _value(record: dict | None, key: str) -> tuple[str, float | None]:
  if record is None or key not in record:
    return "not recorded", None
  value = float(record[key])
  return f"{value:.4g} @ {record['step']}", value


def _duration(seconds: float) -> str:
  return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def config_differences(runs: list[Run]) -> tuple[list[tuple[str, list]], list[tuple[str, object]]]:
  """([(dotted key, [value per run, or ABSENT])] where the runs differ, [(key, value)] where all agree)."""
  flat = [_flatten(run.config) for run in runs]
  keys = sorted(set().union(*flat))
  differing = [(key, [values.get(key, ABSENT) for values in flat]) for key in keys
               if len({json.dumps(values.get(key, ABSENT), sort_keys=True) for values in flat}) > 1]
  shared = [(key, flat[0][key]) for key in keys if key not in dict(differing)]
  return differing, shared


ABSENT = "(absent)"  # a key one run's config does not have (another task's, another body's)


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


# ----------------------------------------------------------------------------
# Figures.


def figure_specs(runs: list[Run]) -> list[dict]:
  """What to draw: [{key, label, kinds, log_y}], the loss, each task metric, then TRAINING_CURVES."""
  specs = [dict(key="loss", label="loss", kinds=("train", "valid"), log_y=False)]
  for metric in dict.fromkeys(run.best_metric for run in runs):
    if metric != "loss":
      specs.append(dict(key=metric, label=metric, kinds=("train", "valid"), log_y=metric in LOG_SCALE_METRICS))
  specs += [dict(key=key, label=label, kinds=("train",), log_y=log_y) for key, label, log_y in TRAINING_CURVES]
  return specs


def quantity_figure(runs: list[Run], key: str, label: str, kinds, log_y: bool):
  """Two panels, against step and against training time; one colour per run, train thin, valid with
  markers. None when no run records `key`."""
  figure, (by_step, by_time) = plot.new_figure(columns=2)
  drawn = []
  for x_key, axes in (("step", by_step), (TIME_KEY, by_time)):
    series, styles = {}, {}
    for index, run in enumerate(runs):
      colour = plot.COLOURS[index % len(plot.COLOURS)]
      for kind in kinds:
        points = plot.curve(run.records, kind=kind, x=x_key, y=key)
        if points:
          name = f"{run.name} · {kind}" if len(kinds) > 1 else run.name
          series[name] = points
          styles[name] = ({"color": colour, "linewidth": 1.0, "alpha": 0.55, "marker": None} if kind == "train"
                          and len(kinds) > 1 else {"color": colour})
    if series:
      x_label = "step" if x_key == "step" else "training time (s, evaluation excluded)"
      plot.draw(axes, series, x_label=x_label, y_label=label, log_y=log_y, integer_x=x_key == "step",
                styles=styles)
      drawn.append(axes)
    else:  # records without the x key (training_seconds came with a later jaxlm)
      axes.set_axis_off()
      axes.text(0.5, 0.5, f"no record has both {x_key!r} and {key!r}", ha="center", va="center",
                transform=axes.transAxes, color="#555555")
  if not drawn:
    return None
  plot.legend_outside(drawn[-1])
  return figure


def render(runs: list[Run], *, title: str = "jaxlm run report", figures_dir: str | None = None) -> str:
  """The whole page, as one HTML string with its figures inside; figures_dir: also each figure as
  <key>.png there (e.g. for a README)."""
  parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_text(title)}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{_text(title)}</h1>", _runs_list(runs)]
  parts.append("<h2>Final and best metrics</h2>")
  parts.append(_summary_table(summary_rows(runs)))
  parts.append(_clock_notes(runs))
  parts.append("<h2>Curves</h2>")
  for spec in figure_specs(runs):
    parts.append(_figure_section(runs, **spec, figures_dir=figures_dir))
  parts.append(_config_section(runs))
  parts.append("</body></html>\n")
  return "\n".join(part for part in parts if part)


def write(runs: list[Run], path: str, *, title: str = "jaxlm run report", figures_dir: str | None = None) -> None:
  page = render(runs, title=title, figures_dir=figures_dir)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as handle:
    handle.write(page)


CSS = """
body { font-family: sans-serif; margin: 1.5em 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
code { font-size: 0.95em; }
"""


def _text(value) -> str:
  return html.escape(str(value))


def _runs_list(runs: list[Run]) -> str:
  items = "".join(f"<li><b>{_text(run.name)}</b>: <code>{_text(run.workdir)}</code>, task {_text(run.task)}, "
                  f"judged by valid {_text(run.best_metric)} ({'lower' if run.best_mode == 'min' else 'higher'} "
                  f"is better)</li>" for run in runs)
  return f"<ul class='runs'>{items}</ul>"


def _summary_table(rows: list[dict]) -> str:
  columns = list(rows[0])
  head = "".join(f"<th>{_text(column)}</th>" for column in columns)
  body = []
  for row in rows:
    cells = []
    for column in columns:
      text, value = row[column]
      if value is None:
        cells.append(f"<td>{_text(text)}</td>")
      else:  # the exact value for readers of the page's source (and the tests)
        cells.append(f"<td class='number' data-value='{value!r}'>{_text(text)}</td>")
    body.append(f"<tr>{''.join(cells)}</tr>")
  return (f"<table id='summary'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
          "<p class='note'>value @ step. Best: the valid record with the best task metric, as the best "
          "checkpoint was chosen.</p>")


def _clock_notes(runs: list[Run]) -> str:
  lines = []
  for run in runs:
    if run.clock_restarts:
      steps = ", ".join(map(str, run.clock_restarts))
      lines.append(f"{_text(run.name)} was resumed after step(s) {steps}; its training time continues from "
                   "the total before each restart.")
  return "".join(f"<p class='note'>{line}</p>" for line in lines)


def _figure_section(runs: list[Run], *, key: str, label: str, kinds, log_y: bool, figures_dir: str | None) -> str:
  title = f"<h3>{_text(label)}{' (log scale)' if log_y else ''}</h3>"
  without = [run.name for run in runs if not any(run.has(key, kind) for kind in kinds)]
  figure = quantity_figure(runs, key, label, kinds, log_y)
  if figure is None:
    return (f"{title}<p class='note'>Not recorded by any run: no {' or '.join(kinds)} record in "
            f"metrics.jsonl has {key!r}.</p>")
  png = plot.encode(figure, "png")
  if figures_dir:
    os.makedirs(figures_dir, exist_ok=True)
    with open(os.path.join(figures_dir, f"{key}.png"), "wb") as handle:
      handle.write(png)
  image = base64.b64encode(png).decode("ascii")
  note = (f"<p class='note'>Not recorded by {', '.join(map(_text, without))} "
          f"(no {' or '.join(kinds)} record has {key!r}).</p>" if without else "")
  return (f"<section class='figure' data-key='{_text(key)}'>{title}"
          f"<img alt='{_text(label)} against step and training time' src='data:image/png;base64,{image}'>"
          f"{note}</section>")


def _config_section(runs: list[Run]) -> str:
  differing, shared = config_differences(runs)
  head = "<th>config key</th>" + "".join(f"<th>{_text(run.name)}</th>" for run in runs)
  if differing:
    rows = "".join(f"<tr><td><code>{_text(key)}</code></td>"
                   + "".join(f"<td>{_text(json.dumps(value) if value is not ABSENT else value)}</td>"
                             for value in values) + "</tr>" for key, values in differing)
    table = f"<table id='config-differences'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
  else:
    table = "<p>The runs' configs are identical.</p>"
  shared_rows = "".join(f"<tr><td><code>{_text(key)}</code></td><td>{_text(json.dumps(value))}</td></tr>"
                        for key, value in shared)
  return (f"<h2>Config differences</h2>{table}<details><summary>{len(shared)} keys the same in every run"
          f"</summary><table id='config-shared'><tbody>{shared_rows}</tbody></table></details>")
