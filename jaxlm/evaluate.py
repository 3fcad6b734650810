"""Restores a workdir's checkpoint on whatever devices are present and scores a split.

Every target token of the split is scored exactly once (see
lm_batches.evaluation_batches), with carried state flowing along each row.
"""

from jaxlm import checkpoint, metrics, train


def evaluate_workdir(workdir: str, *, step: int | None = None, best: bool = False,
                     splits: tuple[str, ...] = ("test",), batch_size: int | None = None,
                     length: int | None = None, data_path: str | None = None,
                     cache_dir: str | None = None) -> list[dict]:
  """One {'step', 'split', 'loss', 'perplexity', 'accuracy', 'accuracy_top5', 'tokens'} per split,
  all from one checkpoint restored once.

  step: a kept checkpoint step; best: the lowest-validation-perplexity one;
  neither: the latest. data_path / cache_dir override the saved config's, for
  a workdir moved to another machine. batch_size (rows, default
  train.eval_batch_size) and length (segment length, default train.seq_len) set
  the evaluation convention: state is carried along each row, so with a
  recurrent body (LSTM, Transformer-XL memory) only the row starts lose context,
  while a stateless body (TCN, transformer without memory) starts every segment
  without context, so a longer `length` gives it more.
  """
  config = checkpoint.load_config(workdir)
  if data_path is not None:
    config.data.path = data_path
  if cache_dir is not None:
    config.data.cache_dir = cache_dir
  experiment = train.build_experiment(config)
  for split in splits:
    if split not in experiment.corpus.splits:
      raise ValueError(f"--split={split!r} is not one of {sorted(experiment.corpus.splits)}")
  manager = checkpoint.manager(workdir, config.train.keep_checkpoints, read_only=True)
  steps = manager.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {workdir}/{checkpoint.CHECKPOINT_DIR}: train first")
  if best:
    step = checkpoint.best_step(manager)
  elif step is None:
    step = manager.latest_step()
  elif step not in steps:
    raise ValueError(f"--step={step} is not kept in {workdir}; kept steps: {sorted(steps)}")
  target = train.abstract_state(experiment.model, experiment.optimizer, config, experiment.mesh)
  state = checkpoint.restore(manager, step, target)
  manager.close()
  eval_step = train.make_eval_step(experiment.model, experiment.loss_fn, experiment.mesh,
                                   chunk_size=config.train.neighbour_chunk_size)
  results = []
  for split in splits:
    sums = train.evaluate(eval_step, experiment.model, experiment.mesh, state.params, state.frozen,
                          experiment.corpus.splits[split], batch_size=batch_size or config.train.eval_batch_size,
                          length=length or config.train.seq_len)
    results.append({"step": int(step), "split": split, **metrics.summarise(sums)})
  return results
