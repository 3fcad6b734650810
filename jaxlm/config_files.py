"""Config files as the launchers read them: "<file>[:<variants>]" plus `--config.<key>=<value>`
overrides, with errors that name the file, the variant or the key (and the closest keys).

Every launcher (through launch/_config_flags.py) and the comparison grid build configs here,
so an override means the same thing on the command line and in a grid. Parsing the overrides
is ml_collections' own (its config flag, in a FlagValues of its own), never a second parser.
"""

import difflib
import importlib.util
import os
import warnings

import ml_collections

from jaxlm import errors


def load(spec: str) -> ml_collections.ConfigDict:
  """The config a --config flag names: "<file>[:<variants>]" -> that file's get_config(variants).

  A missing file is a MissingFileError; the file's own errors (an unknown variant) pass through.
  """
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("jaxlm_config_file", path)
  if module_spec is None or not os.path.isfile(path):
    raise errors.MissingFileError(f"config file {path} not found (from {spec!r}); name one under configs/")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  # As ml_collections' config flag calls it: with the variants after ":", else without arguments.
  return module.get_config(variant) if variant else module.get_config()


def load_with_overrides(spec: str, overrides=(), *, name: str = "config") -> ml_collections.ConfigDict:
  """The locked config `--<name>=<spec> --<name>.<override>...` gives ("key=value" each), as
  launch/train.py builds it; each error names the file, the variant or the override."""
  base = load(spec)  # the file and its variants alone first, with their own errors
  try:
    return _parse_flags(spec, overrides, name)
  except Exception as error:  # noqa: BLE001 (absl, ml_collections and the config file raise many kinds)
    argv = [f"--{name}.{override}" for override in overrides]
    message = unknown_key_message(argv, base, name)
    if message is None:
      reason = " ".join(str(error.args[0] if error.args else error).split())
      culprit = next((override for override in overrides if not _applies(spec, override, name)), None)
      message = (f"--{name}.{culprit}: {reason}" if culprit else
                 f"{spec} with overrides {list(overrides)}: {reason}")
    raise errors.ConfigError(message) from None


def _parse_flags(spec: str, overrides, name: str) -> ml_collections.ConfigDict:
  from absl import flags
  from ml_collections import config_flags
  argv = ["jaxlm", f"--{name}={spec}", *(f"--{name}.{override}" for override in overrides)]
  flag_values = flags.FlagValues()  # its own: the process's absl flags stay as they are
  config_flags.DEFINE_config_file(name, None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
  with warnings.catch_warnings():  # ml_collections loads config files with the deprecated load_module
    warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
    flag_values(argv)
  return flag_values[name].value


def _applies(spec: str, override: str, name: str) -> bool:
  """Whether `override` alone applies to the config (to name the wrong one of several)."""
  try:
    _parse_flags(spec, (override,), name)
  except Exception:  # noqa: BLE001
    return False
  return True


def unknown_key_message(argv, config, name: str = "config") -> str | None:
  """For a --<name>.a.b=value in argv naming no key of `config`: the flag and the closest keys there."""
  prefix = f"--{name}."
  for argument in argv:
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
