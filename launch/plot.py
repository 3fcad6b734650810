"""Plots one metric of several runs against another, as an SVG (no plotting library needed).

  python launch/plot.py --output=benchmarks/ru_lm_valid_loss.svg --kind=valid --x=step --y=loss \
      --run="word, scratch=runs/ru_lm/word_scratch" --run="bag, FastText=runs/ru_lm/bag_fasttext"

Each --run is LABEL=WORKDIR (its metrics.jsonl is read). --x/--y are record keys, e.g. step,
training_seconds, loss, perplexity, accuracy, accuracy_top5; --kind is train or valid.
"""

import os

import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags

from jaxlm import plot

_RUNS = flags.DEFINE_multi_string("run", [], "LABEL=WORKDIR, once per curve.")
_OUTPUT = flags.DEFINE_string("output", None, "The .svg file to write.", required=True)
_KIND = flags.DEFINE_enum("kind", "valid", ["train", "valid"], "Which records.")
_X = flags.DEFINE_string("x", "step", "Record key for the x axis.")
_Y = flags.DEFINE_string("y", "loss", "Record key for the y axis.")
_X_LABEL = flags.DEFINE_string("x_label", "", "Axis label; default the key.")
_Y_LABEL = flags.DEFINE_string("y_label", "", "Axis label; default the key.")
_TITLE = flags.DEFINE_string("title", "", "Plot title.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  series = {}
  for run in _RUNS.value:
    label, separator, workdir = run.rpartition("=")
    if not separator or not label:
      raise app.UsageError(f"--run={run!r} must be LABEL=WORKDIR")
    series[label] = plot.read_curve(os.path.join(workdir, "metrics.jsonl"), kind=_KIND.value, x=_X.value,
                                    y=_Y.value)
  if not series:
    raise app.UsageError("give at least one --run=LABEL=WORKDIR")
  svg = plot.line_plot(series, x_label=_X_LABEL.value or _X.value, y_label=_Y_LABEL.value or _Y.value,
                       title=_TITLE.value)
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  with open(_OUTPUT.value, "w", encoding="utf-8") as handle:
    handle.write(svg)
  print(f"wrote {_OUTPUT.value}: {len(series)} curves")


if __name__ == "__main__":
  app.run(main)
