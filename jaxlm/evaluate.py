"""Restores a workdir's checkpoint on whatever devices are present and scores splits.

Every target (a language model's tokens) or example (a classifier's sentences) of a
split is scored exactly once; the task of the run (jaxlm/tasks) says how.
"""

from jaxlm import checkpoint, train


def restore_workdir(workdir: str, *, step: int | None = None, best: bool = False, data_path: str | None = None,
                    cache_dir: str | None = None):
  """(experiment, step, state) of a workdir's kept checkpoint, on whatever devices are present.

  step: a kept step; best: the best by the task's validation metric; neither: the latest.
  data_path / cache_dir override a language model's saved config.data (a moved workdir).
  """
  config = checkpoint.load_config(workdir)
  if data_path is not None:
    config.data.path = data_path
  if cache_dir is not None:
    config.data.cache_dir = cache_dir
  experiment = train.build_experiment(config)
  task = experiment.task
  manager = checkpoint.manager(workdir, config.train.keep_checkpoints, read_only=True,
                               best_metric=task.best_metric, best_mode=task.best_mode)
  steps = manager.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {workdir}/{checkpoint.CHECKPOINT_DIR}: train first")
  if best:
    step = checkpoint.best_step(manager)
  elif step is None:
    step = manager.latest_step()
  elif step not in steps:
    raise ValueError(f"--step={step} is not kept in {workdir}; kept steps: {sorted(steps)}")
  state = checkpoint.restore(manager, step, train.experiment_target(experiment))
  manager.close()
  return experiment, int(step), state


def evaluate_workdir(workdir: str, *, step: int | None = None, best: bool = False,
                     splits: tuple[str, ...] = ("test",), batch_size: int | None = None,
                     length: int | None = None, data_path: str | None = None,
                     cache_dir: str | None = None) -> list[dict]:
  """One {'step', 'split', **the task's summary} per split, all from one checkpoint restored
  once (a language model's summary: loss, perplexity, accuracy, accuracy_top5, tokens).

  step: a kept checkpoint step; best: the best by the task's validation metric;
  neither: the latest. data_path / cache_dir override the saved config's, for
  a workdir moved to another machine. batch_size (rows, default
  train.eval_batch_size) and length (segment length, default train.seq_len) set
  a language model's evaluation convention: state is carried along each row, so with a
  recurrent body (LSTM, Transformer-XL memory) only the row starts lose context,
  while a stateless body (TCN, transformer without memory) starts every segment
  without context, so a longer `length` gives it more.
  """
  experiment, step, state = restore_workdir(workdir, step=step, best=best, data_path=data_path,
                                            cache_dir=cache_dir)
  task, config = experiment.task, experiment.config
  for split in splits:
    if split not in task.splits:
      raise ValueError(f"--split={split!r} is not one of {sorted(task.splits)}")
  evaluate_split = train.make_evaluator(experiment)
  options = {"length": length} if length else {}
  results = []
  for split in splits:
    summary = evaluate_split(state, split,
                                   batch_size=batch_size or config.train.eval_batch_size, **options)
    results.append({"step": step, "split": split, **summary})
  return results
