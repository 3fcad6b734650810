"""Plots one metric of several runs against another, as a PNG or SVG (jaxlm.tools.plot's matplotlib style).

  python launch/plot.py --output=benchmarks/ru_mlm_valid_loss.png --kind=valid --x=step --y=loss \
      --run="transformer=runs/ru_mlm/transformer" --run="BiLSTM=runs/ru_mlm/lstm"

Each --run is LABEL=WORKDIR (its metrics.jsonl is read). --x/--y are record keys, e.g. step,
training_seconds, loss, perplexity, accuracy, accuracy_top5; --kind is train or valid. The
output's extension (.png or .svg) picks the format. For every curve of a set of runs on one
page, with their final and best metrics and config differences, use launch/report.py.
"""

import os

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags

from jaxlm import errors
from jaxlm.tools import plot

_RUNS = flags.DEFINE_multi_string("run", [], "LABEL=WORKDIR, once per curve.")
_OUTPUT = flags.DEFINE_string("output", None, "The .png or .svg file to write.", required=True)
_KIND = flags.DEFINE_enum("kind", "valid", ["train", "valid"], "Which records.")
_X = flags.DEFINE_string("x", "step", "Record key for the x axis.")
_Y = flags.DEFINE_string("y", "loss", "Record key for the y axis.")
_X_LABEL = flags.DEFINE_string("x_label", "", "Axis label; default the key.")
_Y_LABEL = flags.DEFINE_string("y_label", "", "Axis label; default the key.")
_TITLE = flags.DEFINE_string("title", "", "Plot title.")
_LOG_Y = flags.DEFINE_bool("log_y", False, "A logarithmic y axis (e.g. for perplexity).")


@errors.one_line("launch/plot.py")
def main(argv):
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments: {argv[1:]}")
  if not _OUTPUT.value.lower().endswith((".png", ".svg")):
    raise errors.ConfigError(f"--output={_OUTPUT.value!r}: give a .png or .svg file name")
  series = {}
  for run in _RUNS.value:
    try:
      label, workdir = plot.parse_run(run)
    except errors.ConfigError as error:  # the flag's shape: a usage error, with the usage
      raise errors.ConfigError(str(error)) from error
    series[label] = plot.read_curve(os.path.join(workdir, "metrics.jsonl"), kind=_KIND.value, x=_X.value,
                                    y=_Y.value)
  if not series:
    raise errors.ConfigError("give at least one --run=LABEL=WORKDIR")
  figure = plot.line_plot(series, x_label=_X_LABEL.value or _X.value, y_label=_Y_LABEL.value or _Y.value,
                          title=_TITLE.value, log_y=_LOG_Y.value, integer_x=_X.value == "step")
  plot.save(figure, _OUTPUT.value)
  print(f"wrote {_OUTPUT.value}: {len(series)} curves")


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/plot.py", None))
