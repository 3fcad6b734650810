"""An equal tuning budget per row: each (task, body, start) row's Optuna study, its trials run as grid cells.

A grid config's `search` section (configs/compare_ru.py documents it) gives every row the same
number of trials. A trial is a cell (kind "trial", "<task>/<body>/<start>/trial<k>"): the row's
command with the settings the study's sampler (TPE) asks for, trained with the search's own seed
(not one of the grid's seeds, so a seed cell's score is a fresh draw, not the maximum the search
selected) and scored on dev. When every trial of a row has finished, the row's seed cells run
with the best trial's settings. Settings are decided when a cell starts, so a cell's command is
complete only then: `settled` gives it (None before), `begin` asks the study for it.

The studies live in one storage (an SQLite file in the grid's workdir by default; a database
URL lets machines share it). A trial's settings are stored when it is asked, under the cell's
name, so a killed search resumes each unfinished trial with its own settings (launch/train.py
resumes its checkpoint) and never repeats a finished one. A trial whose command fails (a
learning rate that diverges, say) is told as failed and the search goes on; a row whose trials
all failed leaves its seed cells blocked. The sampler is seeded by the search's seed and the
row's trial count, so the same history of trials asks the same next settings, interrupted or
not. Pruning is not used: a trial's dev curve is in its workdir, not reported while it trains.
"""

import math
import os
import threading

from jaxlm.tools.compare import grid as grid_lib

KINDS = ("log", "uniform", "int", "choice")  # log-uniform float, uniform float, uniform integer, categorical
STORAGE_FILE = "search.sqlite3"


class Search:
  """The grid config's search section, bound to the grid's workdir (the storage's default place)."""

  def __init__(self, search_config, workdir: str):
    self.trials = int(search_config.trials)
    self.seed = int(search_config.seed)
    self.startup_trials = int(search_config.startup_trials)
    self.space = {name: dict(spec) for name, spec in search_config.space.items()}
    for name, spec in self.space.items():
      if spec.get("kind") not in KINDS:
        raise grid_lib.GridError(f"grid config search.space.{name}.kind={spec.get('kind')!r}: give one of {KINDS}")
      if not spec.get("keys"):
        raise grid_lib.GridError(f"grid config search.space.{name} names no config keys (keys=(...,))")
      needed = ("choices",) if spec["kind"] == "choice" else ("low", "high")
      missing = [key for key in needed if key not in spec]
      if missing:
        raise grid_lib.GridError(f"grid config search.space.{name} (kind {spec['kind']}) has no {', '.join(missing)}")
    # The default file is made with the study's first trial: a dry run or a table writes nothing.
    self.path = "" if search_config.storage else os.path.abspath(os.path.join(workdir, STORAGE_FILE))
    self.storage = search_config.storage or f"sqlite:///{self.path}"
    self._lock = threading.Lock()  # one grid run's threads ask and tell one at a time

  def distributions(self, config) -> dict:
    """{parameter: optuna distribution} of the parameters the row's config has a key of."""
    from optuna import distributions
    chosen = {}
    for name, spec in self.space.items():
      if not self.keys_in(config, name):
        continue
      if spec["kind"] == "choice":
        chosen[name] = distributions.CategoricalDistribution(tuple(spec["choices"]))
      elif spec["kind"] == "int":
        chosen[name] = distributions.IntDistribution(int(spec["low"]), int(spec["high"]))
      else:
        chosen[name] = distributions.FloatDistribution(float(spec["low"]), float(spec["high"]),
                                                       log=spec["kind"] == "log")
    return chosen

  def keys_in(self, config, name: str) -> list[str]:
    """The parameter's config keys that the row's config has (a dropout key of another body is not)."""
    return [key for key in self.space[name]["keys"] if _has_key(config, key)]

  def check_keys(self, configs: list) -> None:
    """A parameter key that no row's config has is a typo: an error naming it, before anything runs."""
    for name, spec in self.space.items():
      for key in spec["keys"]:
        if configs and not any(_has_key(config, key) for config in configs):
          raise grid_lib.GridError(f"grid config search.space.{name}: no row's config has the key {key!r}; "
                                   "fix the key (e.g. optim.lr, model.transformer.dropout)")

  def study(self, row: str, *, create: bool = True):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if self.path and not os.path.exists(self.path):
      if not create:
        return None
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
    if not create:
      try:
        return optuna.load_study(study_name=row, storage=self.storage)
      except KeyError:  # no trial of the row has been asked yet
        return None
    study = optuna.create_study(study_name=row, storage=self.storage, direction="maximize", load_if_exists=True)
    # Seeded by the history's length: the same finished trials ask the same next settings.
    study.sampler = optuna.samplers.TPESampler(seed=self.seed * 100_003 + len(study.trials),
                                               n_startup_trials=self.startup_trials)
    return study

  def trial_of(self, study, cell_name: str):
    """The study's trial asked for `cell_name`, or None."""
    for trial in study.trials:
      if trial.user_attrs.get("cell") == cell_name:
        return trial
    return None

  def best(self, row: str):
    """The row's best finished trial once all its trials finished (complete or failed), else None."""
    from optuna.trial import TrialState
    study = self.study(row, create=False)
    if study is None:
      return None
    finished = [trial for trial in study.trials if trial.state in (TrialState.COMPLETE, TrialState.FAIL)]
    complete = [trial for trial in finished if trial.state == TrialState.COMPLETE]
    if len(finished) < self.trials or not complete:
      return None
    return max(complete, key=lambda trial: (trial.value, -trial.number))

  def overrides(self, config, params: dict) -> tuple[str, ...]:
    """"key=value" for every config key of every parameter in `params` the row's config has."""
    return tuple(f"{key}={params[name]!r}" for name in params for key in self.keys_in(config, name))

  def settled(self, cell: grid_lib.Cell) -> grid_lib.Cell | None:
    """The cell with its row's tuned settings among its overrides; None while they are not decided
    (a trial not asked yet, a seed cell whose row's search has not finished). Other cells as they are."""
    if not cell.search_row:
      return cell
    with self._lock:
      if cell.kind == "trial":
        study = self.study(cell.search_row, create=False)
        trial = self.trial_of(study, cell.name) if study is not None else None
      else:
        trial = self.best(cell.search_row)
    return None if trial is None else self._with(cell, trial.params)

  def begin(self, cell: grid_lib.Cell) -> grid_lib.Cell:
    """settled(cell), asking the row's study for a trial's settings the first time it runs."""
    settled = self.settled(cell)
    if settled is not None or cell.kind != "trial":
      if settled is None:
        raise grid_lib.GridError(f"{cell.name}: its row's search has no finished trial to take settings from")
      return settled
    from jaxlm.tools.compare import cell_configs
    with self._lock:
      study = self.study(cell.search_row)
      trial = study.ask(self.distributions(cell_configs.load_config(cell.config, cell.overrides)))
      trial.set_user_attr("cell", cell.name)
      params = trial.params
    return self._with(cell, params)

  def tell(self, cell: grid_lib.Cell, value: float | None) -> None:
    """Records a trial's dev score (None: its command failed, a failed trial); a finished trial is left as it is."""
    from optuna.trial import TrialState
    with self._lock:
      study = self.study(cell.search_row)
      trial = self.trial_of(study, cell.name)
      if value is None or not math.isfinite(value):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
      else:
        study.tell(trial.number, value, skip_if_finished=True)

  def summary(self, rows: list[str]) -> list[str]:
    """One line per row: its finished trials, the best trial's dev score and settings."""
    from optuna.trial import TrialState
    lines = []
    for row in rows:
      study = self.study(row, create=False)
      trials = study.trials if study is not None else []
      complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
      failed = sum(trial.state == TrialState.FAIL for trial in trials)
      if not complete:
        lines.append(f"- {row}: {len(complete)} of {self.trials} trials finished")
        continue
      best = max(complete, key=lambda trial: (trial.value, -trial.number))
      settings = ", ".join(f"{name}={_format(value)}" for name, value in best.params.items())
      lines.append(f"- {row}: {len(complete)} of {self.trials} trials finished"
                   + (f" ({failed} failed)" if failed else "")
                   + f"; best trial {best.number}, dev {best.value:.4f}: {settings}")
    return lines

  def _with(self, cell: grid_lib.Cell, params: dict) -> grid_lib.Cell:
    import dataclasses
    from jaxlm.tools.compare import cell_configs
    config = cell_configs.load_config(cell.config, cell.overrides)
    # Before the seed override (the last), so a cell's command reads: settings, then its seed.
    tuned = self.overrides(config, params)
    return dataclasses.replace(cell, overrides=cell.overrides[:-1] + tuned + cell.overrides[-1:])


def _has_key(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "keys") or part not in node:
      return False
    node = node[part]
  return True


def _format(value) -> str:
  return f"{value:.3g}" if isinstance(value, float) else str(value)
