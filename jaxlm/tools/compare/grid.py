"""A grid config expanded into cells, in run order: pre-training first, then fine-tuning seed-major.

A cell is one command a user could type: `python launch/train.py --config=configs/finetune.py:
task=rucola,body=lstm,start=fasttext --config.seed=1 ... --workdir=...` (or `launch/fasttext.py`
for the FastText vectors every FastText start reads). The pre-training runs the checkpoint
starts come from (a masked LM and a causal LM per body) are cells too, with their cost.
"""

import dataclasses
import fnmatch
import os
import shlex

from jaxlm import errors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository

# A grid start -> (configs/finetune.py's start variant, the pre-training it reads: None |
# "fasttext" (the .bin) | "mlm" / "mlm_vmf" / "clm" (a pre-trained workdir's best checkpoint, or
# with "@<step>" its checkpoint at that step: start_kind)).
STARTS = {
    "scratch": ("start=scratch", None),
    "fasttext": ("start=fasttext", "fasttext"),
    "frozen": ("start=frozen", "fasttext"),
    "mlm": ("start=checkpoint", "mlm"),
    # The cheap pre-training itself: a masked LM whose head predicts each masked word's FastText
    # vector (von Mises-Fisher loss) instead of a softmax over the vocabulary.
    "mlm_vmf": ("start=checkpoint", "mlm_vmf"),
    "clm": ("start=checkpoint", "clm"),
    # SentencePiece pieces of the task's words, each piece's row from FastText (fasttext_pieces).
    "bpe_fasttext": ("input=bpe,start=fasttext", "fasttext"),
}
ALONG = "@"  # "mlm@1000": the start `mlm`, read from its pre-training's checkpoint at step 1,000 instead of its best


def start_kind(start: str) -> tuple[str, int | None]:
  """("mlm", 1000) for "mlm@1000"; ("mlm", None) for "mlm" (the pre-training's best checkpoint)."""
  kind, along, step = start.partition(ALONG)
  if kind not in STARTS or (along and (not step.isdigit() or STARTS[kind][1] in (None, "fasttext"))):
    raise GridError(f"grid config starts: {start!r} is not one of {list(STARTS)}, nor a checkpoint start at a "
                    f"step of its pre-training (e.g. 'mlm{ALONG}1000': the masked LM's checkpoint at step 1,000)")
  return kind, int(step) if step else None


# Run order: every cell of a level finishes (or fails) before the next level starts.
LEVELS = {"fasttext": 0, "pretrain": 1, "trial": 2, "finetune": 3}
SCORED = ("trial", "finetune")  # kinds scored by launch/evaluate.py at their best checkpoint


class GridError(errors.UserError, ValueError):
  """A grid config or a grid workdir that cannot be run as it is; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str  # unique within the grid, e.g. "rucola/lstm/fasttext/seed1" or "pretrain/ru/mlm_lstm"
  kind: str  # a key of LEVELS
  config: str  # "<config file>[:<variants>]"
  overrides: tuple[str, ...]  # "key=value": --config.key=value on the command line
  workdir: str
  needs: tuple[str, ...] = ()  # names of cells whose outputs this one reads
  task: str = ""
  body: str = ""
  start: str = ""
  seed: int = 0
  metric: str = ""  # the task's number in the table (a key of its summary)
  splits: tuple[str, ...] = ()  # scored at the best checkpoint; the first is dev ("valid")
  test_split: str = ""  # one of splits with labels to report as test; "" = none
  also_metrics: tuple[str, ...] = ()  # more dev summary keys for the table (QA's exact_match beside f1)
  search_row: str = ""  # "<task>/<body>/<start>": the study its tuned settings come from; "" = none (search.py)

  @property
  def output(self) -> str:
    """What later cells read: the FastText .bin, or the workdir of a trained run."""
    return os.path.join(self.workdir, "fasttext.bin") if self.kind == "fasttext" else self.workdir

  def command(self) -> list[str]:
    """The command, as run from the current directory with `python` the venv's."""
    script = "fasttext.py" if self.kind == "fasttext" else "train.py"
    destination = f"--output={self.output}" if self.kind == "fasttext" else f"--workdir={self.workdir}"
    return ["python", _launcher(script), f"--config={self.config}",
            *(f"--config.{override}" for override in self.overrides), destination]

  def evaluate_command(self) -> list[str]:
    """launch/evaluate.py on the best checkpoint: one JSON line per split, last on stdout."""
    return ["python", _launcher("evaluate.py"), f"--workdir={self.workdir}", "--best",
            f"--split={','.join(self.splits)}"]

  def command_line(self) -> str:
    return shlex.join(self.command())


def _launcher(script: str) -> str:
  """launch/<script> relative to the current directory (just launch/<script> from the repository root)."""
  return os.path.relpath(os.path.join(ROOT, "launch", script))


@dataclasses.dataclass
class Grid:
  cells: list[Cell]  # in run order: by level, then as the grid config lists them
  not_applicable: list[str]  # "task/body/start: why" for combinations the grid leaves out
  search: "object | None" = None  # a jaxlm.tools.compare.search.Search when rows are tuned

  def cell(self, name: str) -> Cell:
    return self._by_name()[name]

  def needs_of(self, name: str) -> list[str]:
    """Every cell `name` reads, directly or through another (a masked LM's FastText start), nearest first."""
    chain, pending = [], list(self.cell(name).needs)
    while pending:
      need = pending.pop(0)
      if need not in chain:
        chain.append(need)
        pending += self.cell(need).needs
    return chain

  def _by_name(self) -> dict:
    return {cell.name: cell for cell in self.cells}


def _format(text: str, **values) -> str:
  """str.replace of {key} placeholders (str.format would trip over other braces)."""
  for key, value in values.items():
    text = text.replace("{" + key + "}", str(value))
  return text


GRID_KEYS = ("tasks", "bodies", "starts", "seeds", "task", "pretrain", "finetune", "finetune_variants", "overrides",
             "search", "pretrain_seeds")


def expand(grid_config, workdir: str) -> Grid:
  """Every cell of the grid (configs/compare_ru.py documents the keys), pre-training cells first."""
  missing = [key for key in GRID_KEYS if key not in grid_config]
  if missing:
    raise GridError(f"the --grid config has no {', '.join(missing)}: it is not a grid config (a training config "
                    "goes to launch/train.py); give one like configs/compare_ru.py")
  cells: dict[str, Cell] = {}
  not_applicable = []
  search = None
  if grid_config.search.trials > 0:
    from jaxlm.tools.compare import search as search_lib
    search = search_lib.Search(grid_config.search, workdir)

  def add(cell: Cell) -> Cell:
    cells.setdefault(cell.name, cell)
    return cells[cell.name]

  # The steps along each pre-training that some start reads ("mlm@1000"): that pre-training keeps them.
  along = {}
  for task in grid_config.tasks:
    extra_starts = grid_config.task[task].get("extra_starts", ()) if task in grid_config.task else ()
    for start in (*grid_config.starts, *extra_starts):
      kind, step = start_kind(start)
      if step is not None:
        along.setdefault(STARTS[kind][1], set()).add(step)
  replicas = tuple(grid_config.pretrain_seeds)
  if not replicas or len(set(replicas)) != len(replicas):
    raise GridError(f"grid config pretrain_seeds={replicas}: give distinct seeds, one per independent pre-training")

  def pretrain(language: str, kind: str, body: str, replica: int = 0) -> Cell | None:
    """The pre-training cell of (language, kind, body) trained with seed pretrain_seeds[replica]; the first
    keeps the name and command a grid of one pre-training per start has always had."""
    if language not in grid_config.pretrain:
      raise GridError(f"grid config pretrain has no language {language!r} (a task's language); "
                      f"it has {sorted(grid_config.pretrain)}")
    sources = grid_config.pretrain[language]
    if kind not in sources:
      raise GridError(f"grid config pretrain.{language} has no {kind!r} entry; it has {sorted(sources)}")
    source = sources[kind]
    if kind != "fasttext" and body not in source.bodies:
      return None
    overrides = tuple(source.overrides)
    if kind != "fasttext" and body in source.get("body_overrides", {}):
      overrides += tuple(source.body_overrides[body])
    needs, values = (), {"body": body}
    if kind != "fasttext" and any("{fasttext}" in override for override in overrides):
      fasttext = pretrain(language, "fasttext", body, replica)
      needs, values = (fasttext.name,), {**values, "fasttext": fasttext.output}
    seed = replicas[replica]
    suffix = ("" if kind == "fasttext" else f"_{body}") + (f"_seed{seed}" if replica else "")
    if kind in along:
      overrides += (f"train.keep_steps={tuple(sorted(along[kind]))}",)
    if seed != 0:  # its own seed (0 is the configs' own): the FastText vectors' (fasttext.seed) or the network's
      overrides += (f"fasttext.seed={seed}" if kind == "fasttext" else f"seed={seed}",)
    name = f"pretrain/{language}/{kind}{suffix}"
    return add(Cell(name=name, kind="fasttext" if kind == "fasttext" else "pretrain",
                    config=_format(source.config, **values),
                    overrides=tuple(_format(override, **values) for override in overrides),
                    workdir=os.path.join(workdir, name), needs=needs, body="" if kind == "fasttext" else body))

  finetune, trial_cells = [], []
  extra = f",{grid_config.finetune_variants}" if grid_config.finetune_variants else ""
  for task in grid_config.tasks:
    if task not in grid_config.task:
      raise GridError(f"grid config tasks lists {task!r} but task.{task} (its language, metric, splits and "
                      f"overrides) is missing; known: {sorted(grid_config.task)}")
    spec = grid_config.task[task]
    for body in grid_config.bodies:
      for start in (*grid_config.starts, *spec.extra_starts):
        kind, along_step = start_kind(start)
        variant, source = STARTS[kind]

        def start_of(replica: int):
          """(needs, overrides) of a cell starting from pre-training replica `replica`; None: none of this body."""
          if source == "fasttext":
            fasttext = pretrain(spec.language, "fasttext", body, replica)
            return (fasttext.name,), (f"model.fasttext_path={fasttext.output}",)
          if source is not None:
            pre_trained = pretrain(spec.language, source, body, replica) if body != "fasttext" else None
            if pre_trained is None:
              return None
            which = "best" if along_step is None else along_step
            return (pre_trained.name,), (f"init.checkpoint={pre_trained.workdir}:{which}",)
          return (), ()

        if start_of(0) is None:
          not_applicable.append(f"{task}/{body}/{start}: no {source} pre-training of this body "
                                f"(grid config pretrain.{spec.language}.{source}.bodies)")
          continue
        row = f"{task}/{body}/{start}"
        config = f"{grid_config.finetune}:task={task},body={body},{variant}{extra}"
        common = dict(kind="finetune", config=config, task=task, body=body, start=start, metric=spec.metric,
                      splits=tuple(spec.splits), test_split=spec.test_split,
                      also_metrics=tuple(spec.get("also_metrics", ())), search_row=row if search else "")
        trials = ()
        if search is not None:
          # The row's trials: its seed cells' command from the first pre-training, the search's seed,
          # scored on dev only.
          needs, start_overrides = start_of(0)
          overrides = (*grid_config.overrides, *spec.overrides, *start_overrides)
          row_trials = [Cell(**{**common, "kind": "trial", "splits": tuple(spec.splits[:1]), "test_split": ""},
                             name=f"{row}/trial{k}", overrides=(*overrides, f"seed={search.seed}"),
                             workdir=os.path.join(workdir, "search", row, f"trial{k}"), needs=needs,
                             seed=search.seed) for k in range(search.trials)]
          trial_cells += row_trials
          trials = tuple(cell.name for cell in row_trials)
        for index, seed in enumerate(grid_config.seeds):
          # Seeds take the pre-trainings in turn, so a pre-trained row's spread samples pre-training too.
          needs, start_overrides = start_of(index % len(replicas) if source is not None else 0)
          name = f"{row}/seed{seed}"
          finetune.append(Cell(**common, name=name,
                               overrides=(*grid_config.overrides, *spec.overrides, *start_overrides, f"seed={seed}"),
                               workdir=os.path.join(workdir, "finetune", name), needs=needs + trials, seed=seed))
  # Trial-major, then seed-major: every (task, body, start) gets its trial 0 (seed 0) before any gets
  # trial 1 (seed 1), so a grid stopped early has every row at fewer rather than some rows missing.
  for cell in sorted(trial_cells, key=lambda cell: int(cell.name.rsplit("trial", 1)[1])):
    add(cell)
  for cell in sorted(finetune, key=lambda cell: grid_config.seeds.index(cell.seed)):
    add(cell)
  ordered = sorted(cells.values(), key=lambda cell: LEVELS[cell.kind])  # stable: grid order within a level
  return Grid(cells=ordered, not_applicable=not_applicable, search=search)


def select(grid: Grid, patterns) -> list[Cell]:
  """The cells whose names match any fnmatch pattern (all when none), plus the cells they need."""
  if not patterns:
    return list(grid.cells)
  chosen = {cell.name for cell in grid.cells if any(fnmatch.fnmatchcase(cell.name, pattern) for pattern in patterns)}
  if not chosen:
    raise GridError(f"--only={','.join(patterns)} matches no cell; names look like "
                    f"{grid.cells[-1].name!r} (--dry_run lists them)")
  chosen |= {need for name in list(chosen) for need in grid.needs_of(name)}
  return [cell for cell in grid.cells if cell.name in chosen]
