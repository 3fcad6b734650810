"""Sentence classification from CSV / TSV files: RuCoLA, SST-2, or any file with a text
column and a label column named in the config; binary or multi-class.

Each sentence becomes <eos> + its words, or "</s>" + their SentencePiece pieces with
task.tokenizer="bpe" (jaxlm.tasks.text_inputs), right-padded to task.max_length; the body encodes it and the head pools it (task.pooling: mean over real
tokens, the first token, or the last real token's state) into class logits. Evaluation
sums a confusion matrix, so accuracy, Matthews correlation and macro-F1 are exact over
any number of batches, devices and padding rows. The best checkpoint is the one with
the best task.best_metric on the "valid" split.

Splits are the keys of task.files (file names inside task.path; an empty name leaves the
split out): "train" and "valid" are required; any other labelled file (RuCoLA's
out-of-domain dev) evaluates too, and an unlabelled one (a hidden test set) can only be
predicted (launch/predict.py).
"""

import jax.numpy as jnp
import numpy as np

from jaxlm import errors, metrics
from jaxlm.starts import fasttext_rows
from jaxlm.data import example_batches, labelled_text, text_files
from jaxlm.tasks import base, example_task, scores, text_inputs

METRICS = ("accuracy", "mcc", "macro_f1", "loss")


def _split_path(task_config, split: str) -> str:
  if not task_config.path:
    raise errors.ConfigError(f"config task.path is empty: set it to the folder holding {dict(task_config.files)}")
  return text_files.find_file(task_config.path, task_config.files[split],
                              f"config task.path/task.files.{split} name it{example_task.optional_split_hint(split)}")


class Classification(example_task.ExampleTask):
  writes_predictions = re_encodes = True
  config_defaults = dict(
      path="",  # folder holding the files below
      files=dict(train="train.csv", valid="dev.csv"),  # split -> file name; "train" and "valid" required
      text_column="sentence", label_column="label",
      id_column="",  # "" = the row number
      # jaxlm.tasks.text_inputs: "words" (lowercase, punctuation split) | "whitespace" | "bpe"
      # (SentencePiece pieces of the words: init.checkpoint's model, else sentencepiece_model
      # if given, else one trained on the task's training texts with bpe_vocab_size pieces;
      # launch/evaluate.py and predict.py give the workdir's own copy, so they never retrain)
      tokenizer="words", bpe_vocab_size=text_inputs.BPE_TASK_VOCAB_SIZE, sentencepiece_model="",
      max_vocab=0,  # vocabulary from the task's train texts (no init.checkpoint): the N most frequent; 0 = all
      max_length=64,  # tokens per sentence, <eos> included; longer ones are truncated (counted)
      # N > 0: each batch is cut to the smallest multiple of N positions that holds its longest
      # sentence (jaxlm.tasks.example_task); 0: every batch has max_length positions
      length_multiple=0,
      pooling="mean",  # mean | first | last
      head_hidden=0,  # 0: a linear head; N: one ReLU layer of N units first
      head_dropout=0.1,
      best_metric="accuracy",  # accuracy | mcc | macro_f1 | loss: picks the best checkpoint
  )

  @classmethod
  def best_of(cls, config):
    if config.task.best_metric not in METRICS:
      raise errors.ConfigError(f"config task.best_metric={config.task.best_metric!r}: choose one of {list(METRICS)}")
    return config.task.best_metric, "min" if config.task.best_metric == "loss" else "max"

  def __init__(self, config):
    task = config.task
    self.best_metric, self.best_mode = self.best_of(config)
    self.task_config = task
    self.splits = example_task.file_splits(task.files)
    self.paths = {split: _split_path(task, split) for split in self.splits}
    self.examples, words = {}, {}
    for split, path in self.paths.items():
      if split in ("train", "valid") and task.label_column not in labelled_text.columns(path):
        raise text_files.DataError(f"{path}: the {split} file needs the label column {task.label_column!r}")
      self.examples[split], words[split] = self._read(path)
    self.labels = labelled_text.LabelSet.from_examples(self.examples["train"], self.paths["train"])
    fasttext_rows.check_config(config.model)
    self.tokenizer = text_inputs.task_tokenizer(
        config, words["train"], [word_list for split in self.splits if split != "train" for word_list in words[split]])
    self.words, self.sentencepiece_model = self.tokenizer.words, self.tokenizer.sentencepiece_model
    self.encoder = text_inputs.Encoder(self.tokenizer, task.max_length)
    self.token_ids, self.label_ids = {}, {}
    for split in self.splits:
      self._encode(split, words[split])
    self.length, self.length_multiple = task.max_length, example_task.check_length_multiple(task)

  def _read(self, path: str) -> tuple[list, list[list[str]]]:
    """(examples, their words) of a CSV / TSV file; labels are read when the file has the column."""
    task = self.task_config
    labelled = task.label_column in labelled_text.columns(path)
    examples = labelled_text.read_labelled_text(path, text_column=task.text_column,
                                                label_column=task.label_column if labelled else None,
                                                id_column=task.id_column or None)
    words = [text_inputs.split_text(example.text, task.tokenizer) for example in examples]
    for example, example_words in zip(examples, words):
      if not example_words:
        raise text_files.DataError(f"{path} line {example.line}: the text has no words after tokenisation "
                                   f"(task.tokenizer={task.tokenizer!r}); remove the row or fix its text")
    return examples, words

  def _encode(self, split: str, words: list[list[str]]) -> None:
    self.token_ids[split] = [self.encoder.ids(example_words) for example_words in words]
    self.encoder.report(self.paths[split])
    if self.examples[split][0].label is not None:
      self.label_ids[split] = self.labels.encode_examples(self.examples[split], self.paths[split])

  def use_vocabulary(self, words: list[str]) -> None:
    """Re-encodes every split with a saved run's vocabulary (a word it lacks -> <unk>), so its
    checkpoint scores and predicts on the ids it was trained with after a file gained words."""
    self.tokenizer = self.tokenizer.with_words(words)
    self.words = self.tokenizer.words
    self.encoder = text_inputs.Encoder(self.tokenizer, self.task_config.max_length)
    for split in self.splits:
      self._encode(split, [text_inputs.split_text(example.text, self.task_config.tokenizer)
                           for example in self.examples[split]])

  def add_file(self, path: str, split: str = "input") -> str:
    """Reads another file with the task's columns (e.g. for launch/predict.py --input) as `split`."""
    self.paths[split] = path
    self.examples[split], words = self._read(path)
    self._encode(split, words)
    self.splits = self.splits + (split,)
    return split

  def head(self, model_config, dtype):
    from jaxlm.models.heads import classification
    return classification.ClassificationHead(
        num_classes=len(self.labels), pooling=self.task_config.pooling, hidden_size=self.task_config.head_hidden,
        dropout=self.task_config.head_dropout, dtype=dtype)

  def num_examples(self, split):
    return len(self.token_ids[split])

  def _batch(self, split: str, indices: np.ndarray) -> dict:
    """Rows of examples `indices` of `split`; index -1 is a padding row (weight 0)."""
    real = indices >= 0
    inputs, mask = example_batches.padded_inputs(example_batches.pick(self.token_ids[split], indices), self.length)
    batch = {"inputs": inputs, "mask": mask, "weights": real.astype(np.float32),
             "example_index": indices.astype(np.int32)}
    if split in self.label_ids:
      batch["labels"] = np.where(real, self.label_ids[split][np.maximum(indices, 0)], 0).astype(np.int32)
    return batch

  def eval_batches(self, split, *, batch_size, limit=0):
    base.check_split(split, self.splits)
    if split not in self.label_ids:
      raise errors.ConfigError(f"split {split!r} ({self.paths[split]}) has no labels to score; predict it with "
                               "launch/predict.py instead")
    return self.example_batches(split, batch_size=batch_size, limit=limit)

  def loss(self, logits, batch):
    """logits float32 [batch, classes]; labels int [batch]; weights [batch] (0 = padding row)."""
    from jaxlm.models.heads import classification
    return classification.loss(logits, batch["labels"], batch["weights"])

  def eval_sums(self, logits, batch):
    sums = self.loss(logits, batch)
    sums["confusion"] = scores.confusion_counts(jnp.argmax(logits, axis=-1), batch["labels"], batch["weights"],
                                                len(self.labels))
    return sums

  def predict(self, logits, batch):
    """int32 [batch]: each row's class id."""
    del batch
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  def write_predictions(self, split, predictions: np.ndarray, path: str) -> int:
    """Writes `id,<label column>` rows (RuCoLA's leaderboard format) for every example of
    `split` in file order; returns the number of rows."""
    examples = self.examples[split]
    text_files.write_csv(path, [self.task_config.id_column or "id", self.task_config.label_column],
                         ([example.id, self.labels.labels[int(label)]] for example, label in zip(examples, predictions)))
    return len(examples)

  def summarise(self, sums):
    summary = metrics.loss_summary(sums, "examples")
    if "confusion" in sums:
      confusion = np.asarray(sums["confusion"])
      summary.update(accuracy=scores.accuracy(confusion), mcc=scores.matthews_correlation(confusion),
                     macro_f1=scores.macro_f1(confusion))
    return summary

  def describe(self, summary):
    return (f"loss {summary['loss']:.4f} accuracy {summary['accuracy']:.4f} MCC {summary['mcc']:.4f} "
            f"macro-F1 {summary['macro_f1']:.4f} over {int(summary['examples'])} examples")
