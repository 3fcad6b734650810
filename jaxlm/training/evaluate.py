"""Restores a workdir's checkpoint on whatever devices are present and scores splits.

Every target (a language model's tokens) or example (a classifier's sentences) of a
split is scored exactly once; the task of the run (jaxlm/tasks) says how.
"""

import sys

from jaxlm import checkpoint, errors
from jaxlm.training import evaluation, experiments


class DataChangedError(errors.UserError, ValueError):
  """The data files differ from those the run was trained on."""


def use_saved_data_identity(experiment, workdir: str, *, allow_data_change: bool = False,
                            check_fingerprint: bool = True) -> None:
  """Checks the data files' fingerprint against the run's and gives the task the saved vocabulary.

  A changed fingerprint is refused unless allow_data_change (then a warning on stderr). The
  task scores with vocabulary.txt's ids whenever it differs from the one rebuilt from the files.
  check_fingerprint=False: no check, for a caller that reads none of the config's splits (a
  prediction of a new file needs only the checkpoint and the saved vocabulary).
  """
  task = experiment.task
  saved, now = checkpoint.load_fingerprint(workdir), task.fingerprint
  if check_fingerprint and now and saved != now:
    message = (f"the data files differ from those {workdir} was trained on (fingerprint saved "
               f"{saved or f'<none: no {checkpoint.DATA_FINGERPRINT_FILE}>'}, now {now}; see config.data / "
               "config.task paths)")
    if not allow_data_change:
      # Both launch/evaluate.py and launch/predict.py have the flag.
      raise DataChangedError(f"{message}. Pass --allow_data_change to use them anyway, with the saved "
                             "vocabulary.")
    print(f"warning: {message}; using them with the saved vocabulary (--allow_data_change)", file=sys.stderr)
  words = checkpoint.load_words(workdir)
  if words != list(task.words):
    if not task.re_encodes:
      raise DataChangedError(f"{workdir}/{checkpoint.VOCABULARY_FILE} differs from the vocabulary built from "
                             f"the data ({checkpoint.vocabulary_difference(words, list(task.words))}), and the "
                             f"{type(task).__name__} task cannot re-encode its data with it")
    task.use_vocabulary(words)
    experiment.model = task.build_model(experiment.config.model)  # the saved vocabulary's size


def restore_workdir(workdir: str, *, step: int | None = None, best: bool = False, data_path: str | None = None,
                    cache_dir: str | None = None, allow_data_change: bool = False,
                    check_fingerprint: bool = True):
  """(experiment, step, state) of a workdir's kept checkpoint, on whatever devices are present.

  step: a kept step; best: the best by the task's validation metric; neither: the latest.
  data_path / cache_dir override a language model's saved config.data (a moved workdir).
  A BPE run's texts are encoded with the workdir's own sentencepiece.model.
  The saved vocabulary and data fingerprint apply (use_saved_data_identity; check_fingerprint).
  """
  config = checkpoint.load_config(workdir)
  # A run's SentencePiece model is read from its workdir, not retrained from the task's texts
  # or the corpus (a moved workdir, an emptied cache or another sentencepiece version).
  own_pieces = checkpoint.sentencepiece_path(workdir)
  if own_pieces and config.task.get("tokenizer") == "bpe":  # a fine-tuning task's own pieces
    config.task.sentencepiece_model = own_pieces
  corpus_bpe = "data" in config and config.data.get("tokenizer") == "bpe"  # a language model's corpus pieces
  if data_path is not None:
    config.data.path = data_path
  if cache_dir is not None:
    config.data.cache_dir = cache_dir
  experiment = experiments.build_experiment(config, sentencepiece_model=own_pieces if corpus_bpe else "")
  use_saved_data_identity(experiment, workdir, allow_data_change=allow_data_change,
                          check_fingerprint=check_fingerprint)
  task = experiment.task
  manager = checkpoint.manager(workdir, config.train.keep_checkpoints, read_only=True,
                               best_metric=task.best_metric, best_mode=task.best_mode)
  steps = manager.all_steps()
  if not steps:
    raise errors.MissingFileError(f"no checkpoint in {workdir}/{checkpoint.CHECKPOINT_DIR}: train first")
  target = experiments.experiment_target(experiment)
  # Scoring reads no optimiser state: a checkpoint saved before an allowed optimiser change
  # (whose state no longer fits the config's optimiser) scores all the same.
  if best or step is not None:  # a named checkpoint: no other will do
    if best:
      step = checkpoint.best_step(manager)
    elif step not in steps:
      raise errors.ConfigError(f"--step={step} is not kept in {workdir}; kept steps: {sorted(steps)}")
    state, _ = checkpoint.restore_step(manager, step, target, restartable=("opt_state",))
  else:  # the latest readable one: a damaged latest is reported and the previous one scored
    step, state, _ = checkpoint.restore_readable(manager, target, restartable=("opt_state",))
  manager.close()
  return experiment, int(step), state


def evaluate_workdir(workdir: str, *, step: int | None = None, best: bool = False,
                     splits: tuple[str, ...] = ("test",), batch_size: int | None = None,
                     length: int | None = None, data_path: str | None = None,
                     cache_dir: str | None = None, allow_data_change: bool = False) -> list[dict]:
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
                                            cache_dir=cache_dir, allow_data_change=allow_data_change)
  task, config = experiment.task, experiment.config
  for split in splits:
    if split not in task.splits:
      raise errors.ConfigError(f"--split={split!r} is not one of {sorted(task.splits)}")
  evaluate_split = evaluation.make_evaluator(experiment)
  options = {"length": length} if length else {}
  results = []
  for split in splits:
    summary = evaluate_split(state, split,
                                   batch_size=batch_size or config.train.eval_batch_size, **options)
    results.append({"step": step, "split": split, **summary})
  return results
