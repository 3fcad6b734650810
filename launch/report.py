"""One self-contained HTML page comparing runs: curves, final and best metrics, config differences.

  python launch/report.py --run=quickstart=runs/quickstart --run=LSTM=runs/lstm --output=report.html

Each --run is NAME=WORKDIR (a workdir written by launch/train.py: metrics.jsonl and
config.json). The page holds training and validation loss and the task's metric against
step and training time, learning rate, gradient norm and tokens/s, a table of final and
best metrics (best by each run's task: perplexity, MCC, accuracy, F1), and the config keys
in which the runs differ. --figures=DIR also writes each figure as a PNG there.
"""

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags

from jaxlm import errors
from jaxlm.tools import report

_RUNS = flags.DEFINE_multi_string("run", [], "NAME=WORKDIR, once per run.")
_OUTPUT = flags.DEFINE_string("output", None, "The .html file to write.", required=True)
_TITLE = flags.DEFINE_string("title", "jaxlm run report", "The page's title.")
_FIGURES = flags.DEFINE_string("figures", "", "A folder to write each figure to as <key>.png as well.")


@errors.one_line("launch/report.py")
def main(argv):
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments: {argv[1:]}")
  runs = report.load_runs(_RUNS.value)  # its errors name the run and what is wrong
  report.write(runs, _OUTPUT.value, title=_TITLE.value, figures_dir=_FIGURES.value or None)
  print(f"wrote {_OUTPUT.value}: {len(runs)} runs ({', '.join(run.name for run in runs)})")


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/report.py", None))
