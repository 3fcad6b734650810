"""Curves from workdirs' metrics.jsonl as a self-contained SVG line plot (no plotting library).

  curve = read_curve("runs/ru_lm/word_scratch/metrics.jsonl", kind="valid", x="step", y="loss")
  svg = line_plot({"word, scratch": curve, ...}, x_label="step", y_label="validation loss")

BENCHMARKS.md's plots are made this way (launch/plot.py), so they need nothing beyond
the requirements and can be regenerated from the runs' own records.
"""

import json
import math
import os
from xml.sax.saxutils import escape

# Distinguishable on white, and in order of how often a plot needs them.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#17becf", "#bcbd22")


def read_curve(metrics_path: str, *, kind: str, x: str, y: str) -> list:
  """[(x, y), ...] from the records of this kind that have both keys, in file order.

  A resumed run appends records for steps it already logged; the later record wins.
  """
  if not os.path.exists(metrics_path):
    raise FileNotFoundError(f"{metrics_path} does not exist: give a workdir that has been trained "
                            f"(it writes metrics.jsonl)")
  points = {}
  with open(metrics_path, encoding="utf-8") as handle:
    for line_number, line in enumerate(handle, 1):
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise ValueError(f"{metrics_path}:{line_number} is not a JSON line ({error})") from error
      if record.get("kind") == kind and x in record and y in record:
        points[record["step"]] = (float(record[x]), float(record[y]))
  if not points:
    raise ValueError(f"{metrics_path} has no {kind!r} records with both {x!r} and {y!r}; "
                     f"check the names against the file's keys")
  return [points[step] for step in sorted(points)]


def _ticks(low: float, high: float, count: int = 5) -> list:
  """About `count` round tick values covering [low, high]."""
  if high <= low:
    return [low]
  raw = (high - low) / count
  magnitude = 10 ** math.floor(math.log10(raw))
  step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=10 * magnitude)
  first = math.ceil(low / step) * step
  return [first + index * step for index in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
  return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def line_plot(series: dict, *, x_label: str, y_label: str, title: str = "",
              width: int = 720, height: int = 440) -> str:
  """{name: [(x, y), ...]} -> an SVG document (str) with axes, ticks and a legend."""
  if not series or not all(series.values()):
    raise ValueError("line_plot needs at least one series, each with at least one point")
  left, right, top, bottom = 70, 190, 40 if title else 20, 50
  xs = [x for points in series.values() for x, _ in points]
  ys = [y for points in series.values() for _, y in points]
  x_low, x_high = min(xs), max(xs)
  y_low, y_high = min(ys), max(ys)
  y_pad = (y_high - y_low) * 0.05 or 1.0
  y_low, y_high = y_low - y_pad, y_high + y_pad
  x_high = x_high if x_high > x_low else x_low + 1.0
  plot_width, plot_height = width - left - right, height - top - bottom

  def to_x(value):
    return left + (value - x_low) / (x_high - x_low) * plot_width

  def to_y(value):
    return top + (y_high - value) / (y_high - y_low) * plot_height

  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
  if title:
    parts.append(f'<text x="{left + plot_width / 2}" y="22" text-anchor="middle" font-size="14">'
                 f'{escape(title)}</text>')
  for tick in _ticks(x_low, x_high):
    parts.append(f'<line x1="{to_x(tick):.1f}" y1="{top}" x2="{to_x(tick):.1f}" y2="{top + plot_height}" '
                 f'stroke="#ddd"/><text x="{to_x(tick):.1f}" y="{top + plot_height + 16}" '
                 f'text-anchor="middle">{_label(tick)}</text>')
  for tick in _ticks(y_low, y_high):
    parts.append(f'<line x1="{left}" y1="{to_y(tick):.1f}" x2="{left + plot_width}" y2="{to_y(tick):.1f}" '
                 f'stroke="#ddd"/><text x="{left - 6}" y="{to_y(tick) + 4:.1f}" '
                 f'text-anchor="end">{_label(tick)}</text>')
  parts.append(f'<rect x="{left}" y="{top}" width="{plot_width}" height="{plot_height}" fill="none" '
               f'stroke="black"/>')
  parts.append(f'<text x="{left + plot_width / 2}" y="{height - 12}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
  parts.append(f'<text transform="translate(16 {top + plot_height / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>')
  for index, (name, points) in enumerate(series.items()):
    colour = COLOURS[index % len(COLOURS)]
    coordinates = " ".join(f"{to_x(x):.1f},{to_y(y):.1f}" for x, y in points)
    parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2">'
                 f'<title>{escape(name)}</title></polyline>')
    for x, y in points:
      parts.append(f'<circle cx="{to_x(x):.1f}" cy="{to_y(y):.1f}" r="2.5" fill="{colour}"/>')
    legend_y = top + 10 + 18 * index
    parts.append(f'<line x1="{left + plot_width + 12}" y1="{legend_y}" x2="{left + plot_width + 32}" '
                 f'y2="{legend_y}" stroke="{colour}" stroke-width="2"/><text x="{left + plot_width + 38}" '
                 f'y="{legend_y + 4}">{escape(name)}</text>')
  parts.append("</svg>")
  return "\n".join(parts) + "\n"
