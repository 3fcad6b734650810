"""Curves from workdirs' metrics.jsonl, drawn with matplotlib in one style (PNG or SVG).

  curve = read_curve("runs/ru_lm/word_scratch/metrics.jsonl", kind="valid", x="step", y="loss")
  figure = line_plot({"word, scratch": curve, ...}, x_label="step", y_label="validation loss")
  save(figure, "benchmarks/ru_lm_valid_loss.png")

BENCHMARKS.md's plots (launch/plot.py) and run reports (jaxlm/tools/report.py) are drawn this
way, so every figure has the same look and can be regenerated from the runs' own records.
Figures are plain matplotlib Figures on the Agg canvas: no pyplot, no display and no
change to the global backend, so a headless machine writes them and a notebook shows them.
"""

import io
import math
import os

import matplotlib
import matplotlib.ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxlm import errors, metrics

# Distinguishable on white, and in order of how often a plot needs them.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#17becf", "#bcbd22")

# The one style of every jaxlm figure (matplotlib rcParams, applied only while drawing and saving).
STYLE = {
    "figure.figsize": (7.2, 4.4),  # inches; one panel, legend outside on the right
    "figure.dpi": 100,
    "savefig.dpi": 100,  # 720 x 440 pixels a panel, as the earlier hand-written SVGs
    "savefig.facecolor": "white",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.prop_cycle": matplotlib.cycler(color=COLOURS),
    "axes.grid": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": "#dddddd",
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "svg.fonttype": "none",  # text stays text: smaller files, labels searchable
    "svg.hashsalt": "jaxlm",  # element ids that do not change between redraws
}


def parse_run(spec: str) -> tuple[str, str]:
  """'LABEL=WORKDIR' -> (label, workdir); the last '=' splits, so a label may hold '='."""
  label, separator, workdir = spec.rpartition("=")
  if not separator or not label or not workdir:
    raise errors.ConfigError(f"--run={spec!r} must be NAME=WORKDIR (e.g. --run=quickstart=runs/quickstart)")
  return label, workdir


def curve(records: list[dict], *, kind: str, x: str, y: str) -> list[tuple[float, float]]:
  """[(x, y), ...] of the records of this kind that have both keys, in step order."""
  return [(float(record[x]), float(record[y])) for record in records
          if record["kind"] == kind and x in record and y in record]


def read_curve(metrics_path: str, *, kind: str, x: str, y: str) -> list[tuple[float, float]]:
  """curve() of one metrics.jsonl; an error naming the keys when it has no such points."""
  points = curve(metrics.read_records(metrics_path), kind=kind, x=x, y=y)
  if not points:
    raise errors.ConfigError(f"{metrics_path} has no {kind!r} records with both {x!r} and {y!r}; "
                             f"check the names against the file's keys")
  return points


def new_figure(columns: int = 1) -> tuple[Figure, list]:
  """A figure of `columns` panels side by side in the style, and its axes."""
  with matplotlib.rc_context(STYLE):
    width, height = STYLE["figure.figsize"]
    figure = Figure(figsize=(width * (0.75 if columns > 1 else 1.0) * columns, height),
                    layout="constrained")
    FigureCanvasAgg(figure)  # the raster canvas; SVG output picks its own at save time
    return figure, list(figure.subplots(1, columns, squeeze=False)[0])


def draw(axes, series: dict, *, x_label: str, y_label: str, title: str = "", log_y: bool = False,
         integer_x: bool = False, styles: dict | None = None) -> None:
  """Draws {name: [(x, y), ...]} as lines on `axes`; integer_x: ticks on whole numbers only (steps);
  styles: {name: matplotlib line keywords}."""
  if not series or not all(series.values()):
    raise ValueError("a plot needs at least one series, each with at least one point")
  with matplotlib.rc_context(STYLE):
    for index, (name, points) in enumerate(series.items()):
      style = {"color": COLOURS[index % len(COLOURS)], "marker": "o" if len(points) <= 30 else None}
      style.update((styles or {}).get(name, {}))
      xs, ys = zip(*points)
      axes.plot(xs, ys, label=name, **style)
    if log_y and all(y > 0 for points in series.values() for _, y in points if math.isfinite(y)):
      axes.set_yscale("log")
      # Plain numbers (400, 600, 1000) rather than 4 x 10^2; in-between ticks labelled when the
      # axis spans few decades (matplotlib's choice).
      axes.yaxis.set_major_formatter(matplotlib.ticker.LogFormatter())
      axes.yaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))
      axes.yaxis.grid(True, which="minor", color="#eeeeee")
    if integer_x:
      axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    if title:
      axes.set_title(title)


def legend_outside(axes) -> None:
  """The lines' legend right of `axes` (a figure's last panel: one legend for the figure)."""
  with matplotlib.rc_context(STYLE):
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def line_plot(series: dict, *, x_label: str, y_label: str, title: str = "", log_y: bool = False,
              integer_x: bool = False) -> Figure:
  """{name: [(x, y), ...]} -> a one-panel figure with axes labels and a legend."""
  figure, (axes,) = new_figure()
  draw(axes, series, x_label=x_label, y_label=y_label, title=title, log_y=log_y, integer_x=integer_x)
  legend_outside(axes)
  return figure


def encode(figure: Figure, image_format: str) -> bytes:
  """The figure as PNG or SVG bytes (deterministic for SVG: no date, fixed ids)."""
  if image_format not in ("png", "svg"):
    raise ValueError(f"image format {image_format!r}: choose png or svg")
  buffer = io.BytesIO()
  with matplotlib.rc_context(STYLE):
    figure.savefig(buffer, format=image_format,
                   metadata={"Date": None} if image_format == "svg" else {"Software": "jaxlm (matplotlib)"})
  return buffer.getvalue()


def save(figure: Figure, path: str) -> None:
  """Writes the figure as PNG or SVG, by the file's extension."""
  image_format = os.path.splitext(path)[1].lstrip(".").lower()
  if image_format not in ("png", "svg"):
    raise errors.ConfigError(f"{path}: give a .png or .svg file name")
  data = encode(figure, image_format)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as handle:
    handle.write(data)
