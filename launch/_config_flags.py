"""Flag parsing for the launchers that take a config file (train.py, benchmark.py, fasttext.py; compare.py's --grid).

ml_collections' config flag defers a config file that does not exist to the config's first
use, reports an unknown variant inside a traceback of its own, and raises absl's traceback for
a misspelled --config.x override. parse_flags reports each in one line, `launch/<name>.py:
<message>` (jaxlm.errors.one_line), before anything else runs, as it does absl's own flag
errors (an unknown or missing flag).
"""

import difflib

import _path  # noqa: F401  (repository root on sys.path)
from absl import flags

from configs import common
from jaxlm import errors


def parse_flags(program: str, name: str = "config"):
  """app.run's flags_parser for a launcher whose --<name> flag is a config file[:variants]."""
  @errors.one_line(program)
  def parse(argv):
    spec = _flag_value(argv, name)
    # The file and its variants alone first, with their own errors (common.load: the file's
    # MissingFileError, check_variants' ConfigError); ml_collections then builds the config again.
    config = common.load(spec) if spec is not None else None
    try:
      return flags.FLAGS(argv)
    except (AttributeError, KeyError) as error:  # an override naming no key of the config
      message = unknown_key_message(argv, config, name) if config is not None else None
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


def unknown_key_message(argv, config, name: str = "config") -> str | None:
  """For a --<name>.a.b=value naming no key of `config`: the flag and the closest keys there."""
  prefix = f"--{name}."
  for argument in argv[1:]:
    if not argument.startswith(prefix):
      continue
    dotted = argument[len(prefix):].split("=", 1)[0]
    node, parts = config, dotted.split(".")
    for depth, part in enumerate(parts):
      if not hasattr(node, "keys") or part not in node:
        section = ".".join(parts[:depth]) or "the top level"
        known = sorted(node.keys()) if hasattr(node, "keys") else []
        initials = "".join(word[0] for word in part.split("_") if word)  # learning_rate -> lr
        close = [key for key in known if key in (initials, part.replace("_", ""))]
        close += [key for key in difflib.get_close_matches(part, known, n=2, cutoff=0.6) if key not in close]
        hint = f"; did you mean {' or '.join(repr(key) for key in close)}?" if close else ""
        return (f"{prefix}{dotted}: the config has no key {part!r} in {section}{hint} "
                f"(keys there: {', '.join(known)})")
      node = node[part]
  return None
