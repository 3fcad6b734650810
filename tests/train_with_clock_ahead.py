"""launch/train.py's run, where process 1's clock runs an hour ahead once training has started.

  python tests/train_with_clock_ahead.py --config=SPEC --workdir=DIR [--config.KEY=VALUE ...] \
      --coordinator_address=HOST:PORT --num_processes=N --process_id=I

tests/test_multiprocess.py starts it on 2 processes: with train.max_minutes under 60, process 1
is out of time after its first step while process 0 has time left. Process 1's clock (the
`clock` of loop.train_and_evaluate) reads the true time once, at the start of the budget,
then an hour later at every reading.
"""

import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

import jax  # noqa: E402

from jaxlm import config_files, distributed  # noqa: E402
from jaxlm.training import loop  # noqa: E402


def an_hour_ahead_after_the_first_reading():
  offsets = itertools.chain([0.0], itertools.repeat(3600.0))
  return lambda: time.time() + next(offsets)


def main(argv):
  arguments = dict(argument.removeprefix("--").split("=", 1) for argument in argv)
  distributed.initialize(arguments["coordinator_address"], int(arguments["num_processes"]),
                         int(arguments["process_id"]))
  overrides = [f"{key.removeprefix('config.')}={value}" for key, value in arguments.items()
               if key.startswith("config.")]
  config = config_files.load_with_overrides(arguments["config"], overrides)
  clock = an_hour_ahead_after_the_first_reading() if jax.process_index() == 1 else time.time
  loop.train_and_evaluate(config, arguments["workdir"], progress=False, clock=clock)


if __name__ == "__main__":
  main(sys.argv[1:])
