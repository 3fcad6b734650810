"""Flag parsing for every launcher: absl's own flag errors (an unknown, missing or mistyped flag)
as one line, and for those that take a config file (train.py, benchmark.py, fasttext.py;
compare.py's --grid) its mistakes too.

ml_collections' config flag defers a config file that does not exist to the config's first
use, reports an unknown variant inside a traceback of its own, and raises absl's traceback for
a misspelled --config.x override. parse_flags reports each in one line, `launch/<name>.py:
<message>` (jaxlm.errors.one_line), before anything else runs, as it does absl's own flag
errors (an unknown or missing flag).
"""

import _path  # noqa: F401  (repository root on sys.path)
from absl import flags

from jaxlm import config_files, errors


def parse_flags(program: str, name: str | None = "config"):
  """app.run's flags_parser for a launcher whose --<name> flag is a config file[:variants]
  (name None: a launcher without one)."""
  @errors.one_line(program)
  def parse(argv):
    spec = _flag_value(argv, name) if name else None
    # The file and its variants alone first, with their own errors (config_files.load: the file's
    # MissingFileError, check_variants' ConfigError); ml_collections then builds the config again.
    config = config_files.load(spec) if spec is not None else None
    try:
      return flags.FLAGS(argv)
    except (AttributeError, KeyError) as error:  # an override naming no key of the config
      message = config_files.unknown_key_message(argv[1:], config, name) if config is not None else None
      raise errors.ConfigError(message or str(error)) from error
    except flags.Error as error:  # an unknown flag, a required one missing, a value of the wrong type
      raise errors.ConfigError(f"{error} (--helpshort lists the flags)") from error
  return parse


def _flag_value(argv, name: str) -> str | None:
  """The value of --<name>=X or --<name> X in argv, or None."""
  for index, argument in enumerate(argv[1:], start=1):
    if argument.startswith(f"--{name}="):
      return argument[len(f"--{name}="):]
    if argument == f"--{name}" and index + 1 < len(argv):
      return argv[index + 1]
  return None
