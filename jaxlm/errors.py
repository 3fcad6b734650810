"""jaxlm's user errors, and how every launcher reports them.

A user error is a mistake the message alone lets the user fix: a config key or value, a
data file that is missing or malformed, a workdir that holds another run, a command-line
flag. Its message names the file, key or value and says what to do. Launchers print it as
one line, `launch/<name>.py: <message>`, and exit 1; any other exception is a bug in jaxlm
and keeps its traceback. JAXLM_TRACEBACK=1 in the environment shows the traceback of user
errors too (to report one, or to debug a config).

Each class also derives from the builtin its callers already catch (ValueError, OSError,
FileNotFoundError), so `except ValueError` keeps working around code that raises them.
"""

import functools
import os
import sys

TRACEBACK_VARIABLE = "JAXLM_TRACEBACK"


class UserError(Exception):
  """A mistake in the user's config, data, workdir or command line; the message says what to do."""


class ConfigError(UserError, ValueError):
  """A config key or value, or a launcher flag's value, that cannot be used (names the key or
  flag, the value and the choices)."""


class DataError(UserError, ValueError):
  """A data file is missing, empty or malformed; the message names it and the fix."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or folder the user named (a workdir, a checkpoint, an input) does not exist."""


class WorkdirError(UserError, ValueError):
  """A workdir (or an output path) that cannot be used as asked; nothing in it was changed."""


def one_line(program: str):
  """Decorates a launcher's main(argv): a UserError is printed as `program: message` on stderr
  (its first line, as the message is written to stand alone) and the process exits 1.

  program: how the user ran it, e.g. "launch/train.py".
  """
  def decorate(main):
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
      try:
        return main(*args, **kwargs)
      except UserError as error:
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
          raise
        print(f"{program}: {one_line_of(error)}", file=sys.stderr)
        sys.exit(1)
    return wrapped
  return decorate


def one_line_of(error: BaseException) -> str:
  """The error's message on one line (line breaks inside it become "; ")."""
  text = str(error).strip() or type(error).__name__
  return "; ".join(line.strip() for line in text.splitlines() if line.strip())
