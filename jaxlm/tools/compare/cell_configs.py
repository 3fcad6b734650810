"""Each cell's config as launch/train.py builds it, so that a grid override means what it means there."""

import os

from jaxlm import config_files, errors
from jaxlm.tools.compare import grid as grid_lib


def load_config(spec: str, overrides=()):
  """The config launch/train.py builds from --config=<spec> --config.<override>... ("key=value" each),
  by the same code (jaxlm.config_files), so a grid override means what it means there."""
  path = spec if os.path.exists(spec.partition(":")[0]) else os.path.join(grid_lib.ROOT, spec)
  try:
    return config_files.load_with_overrides(path, overrides)
  except errors.ConfigError as error:
    raise grid_lib.GridError(f"config {spec}: {error}; fix the grid config's overrides or the --grid.* flag that "
                             "sets them") from None
  except errors.UserError as error:
    raise grid_lib.GridError(f"config {spec}: {error}") from None


def check_configs(cells, search=None) -> None:
  """Builds every cell's config (no data, no model) so that a mistyped key or value in the grid's
  overrides, or a search parameter's key that no row has (search: the grid's Search), stops the
  grid before any cell runs, naming the cell, not when the grid reaches it."""
  configs = []
  for cell in cells:
    try:
      configs.append(load_config(cell.config, cell.overrides))
    except grid_lib.GridError as error:
      raise grid_lib.GridError(f"{cell.name}: {error}") from None
  if search is not None:
    search.check_keys([config for cell, config in zip(cells, configs) if cell.kind == "trial"])
