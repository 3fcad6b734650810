"""One-off: redraws the hand-written SVG plots of runs whose workdirs are gone, in jaxlm.tools.plot's style.

  python benchmarks/redraw_from_svg.py benchmarks/wt2_heads_accuracy.svg ...

Until commit f92fea2 benchmarks/*.svg were drawn by a hand-written SVG writer; most of their
runs' metrics.jsonl files are no longer kept, so launch/plot.py cannot draw them again. Each of
those SVGs holds its data: one <polyline> per curve (titled with the curve's name) in pixel
coordinates, and labelled grid lines (ticks) that map pixels back to values. This reads each
file as it was at that commit, inverts the axes (a least-squares line through the ticks) and
draws the same curves, labels and title with jaxlm.tools.plot. Pixel coordinates were written to
0.1 px, so a value is recovered to within about 0.05% of its axis's range.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jaxlm.tools import plot  # noqa: E402

HAND_WRITTEN = "f92fea2"  # the last commit whose benchmarks/*.svg the hand-written writer drew
SVG = "{http://www.w3.org/2000/svg}"


def _axis_map(ticks: list[tuple[float, float]]):
  """Least-squares (pixel -> value) line through [(pixel, value)] tick marks."""
  count = len(ticks)
  mean_pixel = sum(pixel for pixel, _ in ticks) / count
  mean_value = sum(value for _, value in ticks) / count
  slope = (sum((pixel - mean_pixel) * (value - mean_value) for pixel, value in ticks)
           / sum((pixel - mean_pixel) ** 2 for pixel, _ in ticks))
  return lambda pixel: mean_value + slope * (pixel - mean_pixel)


def _is_number(text: str) -> bool:
  return text.replace(",", "").replace(".", "").lstrip("-").isdigit()


def read_hand_written(text: str) -> dict:
  """{series: {name: [(x, y)]}, title, x_label, y_label} of a hand-written jaxlm SVG."""
  root = ElementTree.fromstring(text)
  x_ticks, y_ticks, title, x_label, y_label = [], [], "", "", ""
  for element in root:
    if element.tag == f"{SVG}text":
      content = element.text or ""
      if element.get("transform"):
        y_label = content
      elif element.get("text-anchor") == "end":  # a y tick: label left of its grid line
        y_ticks.append((float(element.get("y")) - 4, float(content.replace(",", ""))))
      elif element.get("font-size") == "14":
        title = content
      elif element.get("text-anchor") == "middle" and _is_number(content):  # an x tick
        x_ticks.append((float(element.get("x")), float(content.replace(",", ""))))
      elif element.get("text-anchor") == "middle":
        x_label = content
  to_x, to_y = _axis_map(x_ticks), _axis_map(y_ticks)
  series = {}
  for line in root.iter(f"{SVG}polyline"):
    name = line.find(f"{SVG}title").text
    points = [tuple(map(float, pair.split(","))) for pair in line.get("points").split()]
    series[name] = [(round(to_x(x), 6), round(to_y(y), 6)) for x, y in points]
  return dict(series=series, title=title, x_label=x_label, y_label=y_label)


def main(paths: list[str]) -> None:
  for path in paths:
    text = subprocess.run(["git", "show", f"{HAND_WRITTEN}:{path}"], capture_output=True, text=True,
                          check=True).stdout
    found = read_hand_written(text)
    figure = plot.line_plot(found["series"], x_label=found["x_label"], y_label=found["y_label"],
                            title=found["title"])
    plot.save(figure, path)
    print(f"redrew {path}: {', '.join(f'{name} ({len(points)} points)' for name, points in found['series'].items())}")


if __name__ == "__main__":
  if len(sys.argv) < 2:
    sys.exit("usage: python benchmarks/redraw_from_svg.py benchmarks/<name>.svg ...")
  main(sys.argv[1:])
