"""Extractive question answering on SQuAD v1.1 JSON files (SQuAD, XQuAD, SberQuAD).

Data. task.file (inside task.path) is split by whole article
(jaxlm.data.squad.split_by_article, task.dev_fraction): its training articles are the
"train" split; the dev articles of task.eval_file ("" = task.file) are "valid". With an
eval_file (another language's translation of the file, same article order, as XQuAD's)
this is zero-shot transfer: train on file A's training articles, validate on file B's
dev articles; the rule picks the same article indices in both files, so no translation
of a validation paragraph is trained on, and file A's own dev articles are the extra
split "valid_source". Each file of task.test_files is a further split of all its
questions (SQuAD's official dev set as "test", XQuAD as more), scored but never trained
on or used to pick a checkpoint.

Inputs. The task's tokenizer (jaxlm.data.tokenizer.Tokenizer, from
jaxlm.tasks.text_inputs.task_tokenizer) reads question and context as jaxlm's word tokens
with character spans (jaxlm.data.spans.word_spans; word and FastText-bag inputs both read
words), or with task.tokenizer="bpe" as those words' SentencePiece pieces, each with its
share of its word's span (jaxlm.data.spans.piece_spans), so an answer is cut from the
original context by character offsets whatever the input. Each question
becomes one or more WINDOWS of task.max_length positions (jaxlm.data.qa_windows),
consecutive windows starting task.stride context tokens apart, in one of two layouts by
task.span_head:
  "concatenation": the start token (<eos>, or "</s>" for pieces) + question, the same
    token as separator, then the window's context tokens, one sequence for the body and a
    span head over its states (jaxlm.models.heads.span). Position 0 (the leading <eos>) is
    the start and end target of a window that does not hold the whole answer.
  "reader": the question in a segment of task.question_length positions, then the
    separator (the null target) and the context tokens; the question-aware reader
    (jaxlm.models.reader) encodes the two segments as two sequences through the same body.
    Its batches add `features`, each context token's exact-match features
    (jaxlm.data.match_features: does its word occur in the question).
Both give span logits [batch, 2, length] over the window's positions, so the loss,
post-processing, scores and predictions below are the same for both.

Training rows are windows (every window of every training question, a fresh
permutation each epoch); evaluation reads every window of a split once. The loss is
the mean of the start and end cross-entropies over each window's positions (padding
masked by the head), per window. eval_sums can only sum, while SQuAD's exact match and
F1 need every window of a question at once, so the task sets `scores_predictions`: the
loop's evaluation (jaxlm.training.evaluation.make_evaluator) also collects every window's start and end
logits and `score_predictions` post-processes and scores them (jaxlm.tasks.squad_scores,
official and "unicode" normalisation), during training and in launch/evaluate.py alike.
The best checkpoint is the one with the best valid F1 (official normalisation).
"""

import json

from absl import logging
import jax.numpy as jnp
import numpy as np

from jaxlm import errors, metrics
from jaxlm.starts import fasttext_rows
from jaxlm.data import match_features, qa_windows, spans, text_files
from jaxlm.data import squad as squad_data
from jaxlm.tasks import base, example_task, squad_scores, text_inputs


SPAN_TOKENIZERS = ("words", "bpe")  # tokenisers whose tokens keep their character spans
SPAN_HEADS = ("concatenation", "reader")


class SpanQA(example_task.ExampleTask):
  best_metric, best_mode = "f1", "max"
  writes_predictions = scores_predictions = True
  # Train on the training articles of `file`, validate on the dev articles of `eval_file`.
  config_defaults = dict(
      path="",  # folder holding the files below
      file="",  # the SQuAD v1.1 .json whose training articles are trained on
      # The file whose dev articles are the "valid" split; "" = `file`. Another language's
      # translation of `file` with the same article order (XQuAD) gives zero-shot transfer:
      # the same dev_fraction rule holds out the same articles in both, so no translation
      # of a validation paragraph is ever trained on.
      eval_file="",
      # Whole articles go to dev, by position in the file: article i is dev when
      # floor((i + 1) * f) > floor(i * f) (every 1/f-th article; jaxlm.data.squad.is_dev_article).
      dev_fraction=0.25,
      # Whole files as evaluation splits, every question of each: split name -> file (relative to
      # task.path; "" leaves the split out). SQuAD's official dev set is everyone's test set, so
      # checkpoints are picked on "valid" (held-out training articles) and it is scored as "test".
      test_files=dict(test=""),
      skip_mismatched=False,  # drop (and count) questions whose answer_start does not match, not fail
      # "words": jaxlm's word tokens with character spans; "bpe": their SentencePiece pieces,
      # each with its share of the word's span (jaxlm.data.spans.piece_spans)
      tokenizer="words", bpe_vocab_size=text_inputs.BPE_TASK_VOCAB_SIZE, sentencepiece_model="",
      max_vocab=0,  # vocabulary from the train questions and contexts (no init.checkpoint); 0 = all
      # Positions per window: <eos> + question (at most half of it), <eos> separator, context.
      max_length=128,
      stride=64,  # context tokens between the starts of consecutive windows (not the overlap)
      max_answer_length=30,  # tokens; post-processing never predicts a longer span
      n_best=20,  # start and end candidates per window in post-processing
      # "concatenation": one sequence [question, separator, context] through the body, a span
      # head over its states; "reader": question and context as two sequences through the same
      # body, with DrQA's question-aware features and bilinear scores (jaxlm.models.reader).
      span_head="concatenation",
      question_length=32,  # the reader's question segment, in tokens (longer questions are cut)
      head_hidden=0,  # the concatenation head's hidden layer (0: none)
      head_dropout=0.1,
  )

  def __init__(self, config):
    task = config.task
    if not task.path:
      raise errors.ConfigError("config task.path is empty: set it to the folder holding the SQuAD .json files")
    if not task.file:
      raise errors.ConfigError("config task.file is empty: name the SQuAD v1.1 .json file to train on")
    if task.tokenizer not in SPAN_TOKENIZERS:
      raise errors.ConfigError(f"config task.tokenizer={task.tokenizer!r}: span QA needs tokens that keep their "
                               f"character spans; choose one of {list(SPAN_TOKENIZERS)}")
    if task.span_head not in SPAN_HEADS:
      raise errors.ConfigError(f"config task.span_head={task.span_head!r}: choose one of {list(SPAN_HEADS)}")
    self.task_config = task
    self.length = task.max_length
    # The reader's question segment (the two-segment window layout); 0: the concatenation layout.
    self.question_positions = task.question_length if task.span_head == "reader" else 0
    if self.question_positions and not 1 <= self.question_positions <= self.length // 2:
      raise errors.ConfigError(f"config task.question_length={task.question_length}: the reader's question "
                               f"segment takes 1 to task.max_length // 2 = {self.length // 2} positions")
    self.skipped_mismatched = 0  # questions dropped by task.skip_mismatched, over every file read
    train_path = self._find(task.file, "file")
    train_questions, source_dev = squad_data.split_by_article(self._read(train_path, require_answers=True),
                                                              dev_fraction=task.dev_fraction)
    self.questions = {"train": train_questions}
    self.paths = {"train": train_path}
    if task.eval_file and task.eval_file != task.file:
      eval_path = self._find(task.eval_file, "eval_file")
      _, self.questions["valid"] = squad_data.split_by_article(self._read(eval_path, require_answers=True),
                                                               dev_fraction=task.dev_fraction)
      self.paths["valid"] = eval_path
      self.questions["valid_source"], self.paths["valid_source"] = source_dev, train_path
    else:
      self.questions["valid"], self.paths["valid"] = source_dev, train_path
    if not self.questions["valid"]:
      raise errors.ConfigError(f"config task.dev_fraction={task.dev_fraction}: the valid split has no questions")
    for split, name in task.test_files.items():
      if not name:
        continue
      if split in self.questions:
        raise errors.ConfigError(f"config task.test_files.{split}: {split!r} is already a split of task.file / "
                                 f"task.eval_file ({sorted(self.questions)}); name the file's split otherwise")
      self.paths[split] = self._find(name, f"test_files.{split}")
      self.questions[split] = self._read(self.paths[split], require_answers=False)
    self.splits = tuple(self.questions)

    def word_lists(questions):  # the words of their questions and (once each) contexts
      texts = [question.question for question in questions]
      texts += list(dict.fromkeys(question.context for question in questions))
      return [[span.token for span in spans.word_spans(text)] for text in texts]

    training_words = word_lists(train_questions)
    other_words = word_lists([question for split, questions in self.questions.items() if split != "train"
                              for question in questions])
    fasttext_rows.check_config(config.model)
    self.tokenizer = text_inputs.task_tokenizer(config, training_words, other_words)
    self.words, self.sentencepiece_model = self.tokenizer.words, self.tokenizer.sentencepiece_model
    self._context_spans = {}  # context text -> its token spans (a paragraph's questions share them)
    self.windows, self.arrays, self.labelled = {}, {}, {}
    for split in self.splits:
      self._make_windows(split)

  # --------------------------------------------------------------------------
  # Reading and windows.

  def _find(self, name: str, key: str) -> str:
    return text_files.find_file(self.task_config.path, name, f"config task.path/task.{key} name it")

  def _read(self, path: str, *, require_answers: bool) -> list:
    questions, report = squad_data.read_squad(path, skip_mismatched=self.task_config.skip_mismatched,
                                              require_answers=require_answers)
    if report.skipped_mismatched:
      logging.warning("%s: skipped %d questions whose answer_start does not match the context "
                      "(task.skip_mismatched=True): ids %s", path, report.skipped_mismatched,
                      ", ".join(report.skipped_ids[:10]) + (" ..." if report.skipped_mismatched > 10 else ""))
    self.skipped_mismatched += report.skipped_mismatched
    if not questions:
      raise text_files.DataError(f"{path} has no questions")
    return questions

  def _spans(self, context: str) -> list:
    """The model's tokens of `context` (words, or their pieces) with their character spans."""
    if context not in self._context_spans:
      self._context_spans[context] = self.tokenizer.token_spans(context)
    return self._context_spans[context]

  def _question_windows(self, question, *, with_answer: bool) -> list[qa_windows.Window]:
    context_spans = self._spans(question.context)
    context_ids = self.tokenizer.ids(span.token for span in context_spans)
    answer = None
    if with_answer:  # the first gold answer is the training target (SQuAD train has one per question)
      text, start = question.answers[0]
      answer = (start, start + len(text))
    start_id = self.tokenizer.start_id
    # The concatenation layout starts with the start token; the reader's question is a sequence of its own.
    question_ids = ([] if self.question_positions else [start_id]) + self.tokenizer.encode(question.question)
    return qa_windows.make_windows(
        question_ids, [(token_id, span.start, span.end) for token_id, span in zip(context_ids, context_spans)],
        max_length=self.length, stride=self.task_config.stride, separator_id=start_id,
        context=question.context, answer=answer, question_positions=self.question_positions)

  def _window_features(self, question, windows) -> np.ndarray:
    """bool [windows, length, NUM_FEATURES]: the context tokens' exact-match features, False elsewhere."""
    by_token = match_features.context_features(question.question, question.context,
                                               self._spans(question.context)).astype(bool)
    by_token = np.concatenate([by_token, np.zeros((1, match_features.NUM_FEATURES), bool)])  # row -1: none
    return np.stack([by_token[window.context_index] for window in windows])

  def _make_windows(self, split: str) -> None:
    """Every window of every question of `split`, in question order, and their stacked arrays."""
    questions = self.questions[split]
    labelled = all(question.answers for question in questions)
    by_question = {question.id: self._question_windows(question, with_answer=labelled) for question in questions}
    flat = [window for windows in by_question.values() for window in windows]
    cut = sum(windows[0].question_tokens_dropped > 0 for windows in by_question.values())
    if cut:
      limit = (f"task.question_length={self.question_positions}" if self.question_positions
               else f"half of task.max_length={self.length}")
      logging.warning("%s (%s): %d questions longer than %s were cut", self.paths[split], split, cut, limit)
    if labelled:
      unreachable = sum(all(window.start_position == window.null_position for window in windows)
                        for windows in by_question.values())
      if unreachable:  # an answer longer than the windows' overlap, or one in spaces only
        logging.warning("%s (%s): %d answers lie whole in no window (task.max_length=%d, stride=%d); "
                        "those questions train only the null position", self.paths[split], split,
                        unreachable, self.length, self.task_config.stride)
    position = lambda window, name: getattr(window, name) or 0  # None (no answer given) -> 0
    self.windows[split], self.labelled[split] = by_question, labelled
    self.arrays[split] = {
        "inputs": np.stack([window.token_ids for window in flat]),  # [windows, length]
        "mask": np.stack([window.mask for window in flat]),
        "start_positions": np.asarray([position(window, "start_position") for window in flat], np.int32),
        "end_positions": np.asarray([position(window, "end_position") for window in flat], np.int32),
    }
    if self.question_positions:
      self.arrays[split]["features"] = np.concatenate([self._window_features(question, by_question[question.id])
                                                       for question in questions])

  def add_file(self, path: str, split: str = "input") -> str:
    """Reads another SQuAD JSON file (every question; answers optional) as `split`, for prediction."""
    self.questions[split], self.paths[split] = self._read(path, require_answers=False), path
    self._make_windows(split)
    self.splits = self.splits + (split,)
    return split

  def training_texts(self) -> list[str]:
    """The training articles' questions and (once each) contexts."""
    questions = self.questions["train"]
    return ([question.question for question in questions]
            + list(dict.fromkeys(question.context for question in questions)))

  def num_examples(self, split: str) -> int:
    """The split's windows (an example here is a question's context window)."""
    return len(self.arrays[split]["inputs"])

  # --------------------------------------------------------------------------
  # The Task contract.

  def head(self, model_config, dtype):
    from jaxlm.models.heads import reader, span
    if self.question_positions:
      return reader.ReaderHead(width=model_config.width, dropout=self.task_config.head_dropout, dtype=dtype)
    return span.SpanHead(hidden_size=self.task_config.head_hidden, dropout=self.task_config.head_dropout,
                         dtype=dtype)

  def build_model(self, model_config):
    if not self.question_positions:
      return super().build_model(model_config)
    from jaxlm import models
    from jaxlm.models import reader
    input_layer, body = models.build_parts(model_config, len(self.words),
                                           subword_width=fasttext_rows.subword_width(model_config, self.words))
    return reader.Reader(input_layer=input_layer, body=body,
                         head=self.head(model_config, models.DTYPES[model_config.compute_dtype]),
                         question_positions=self.question_positions,
                         embedding_dropout=model_config.embedding_dropout)

  def _batch(self, split: str, indices: np.ndarray) -> dict:
    """Rows of windows `indices` of `split`; index -1 is a padding row (weight 0, no real position)."""
    real = indices >= 0
    safe = np.maximum(indices, 0)
    batch = {key: value[safe] for key, value in self.arrays[split].items()}
    batch["mask"] = batch["mask"] & real[:, None]
    batch["inputs"] = np.where(real[:, None], batch["inputs"], 0).astype(np.int32)
    batch["start_positions"] = np.where(real, batch["start_positions"], 0).astype(np.int32)
    batch["end_positions"] = np.where(real, batch["end_positions"], 0).astype(np.int32)
    if "features" in batch:
      batch["features"] = (batch["features"] & real[:, None, None]).astype(np.float32)
    batch["weights"] = real.astype(np.float32)
    batch["example_index"] = indices.astype(np.int32)  # the window's row in the split (jaxlm.training.predict)
    return batch

  def eval_batches(self, split, *, batch_size, limit=0):
    """Every window of `split` once (the first `limit` windows when limit > 0)."""
    base.check_split(split, self.splits)
    if not self.labelled[split]:
      raise errors.ConfigError(f"split {split!r} ({self.paths[split]}) has questions without answers to score; "
                               "predict it with launch/predict.py instead")
    return self.example_batches(split, batch_size=batch_size, limit=limit)

  def loss(self, logits, batch):
    """Per window: the mean of its start and end cross-entropies; count = real windows."""
    from jaxlm.models.heads import span
    return span.loss(logits, batch["start_positions"], batch["end_positions"], batch["weights"])

  def eval_sums(self, logits, batch):
    sums = self.loss(logits, batch)
    weights = batch["weights"].astype(jnp.float32)
    predicted = jnp.argmax(logits, axis=-1)  # [batch, 2]: positions, the null position included
    start_correct = predicted[:, 0] == batch["start_positions"]
    end_correct = predicted[:, 1] == batch["end_positions"]
    sums.update(start_correct=jnp.sum(weights * start_correct), end_correct=jnp.sum(weights * end_correct),
                span_correct=jnp.sum(weights * (start_correct & end_correct)))
    return sums

  def summarise(self, sums):
    count = metrics.safe_count(sums)
    summary = metrics.loss_summary(sums, "windows")
    if "start_correct" in sums:  # position accuracies per window (not SQuAD's EM: see score_predictions)
      summary.update(start_accuracy=sums["start_correct"] / count, end_accuracy=sums["end_correct"] / count,
                     span_accuracy=sums["span_correct"] / count)
    return summary

  def describe(self, summary):
    return (f"span loss {summary['loss']:.4f} start accuracy {summary['start_accuracy']:.4f} "
            f"end accuracy {summary['end_accuracy']:.4f} over {int(summary['windows'])} windows")

  # --------------------------------------------------------------------------
  # Answers and SQuAD scores: post-processing over all windows of each question.

  def predict(self, logits, batch):
    """float32 [batch, 2, length]: each window's start and end logits (padding at MASKED_LOGIT)."""
    del batch
    return logits

  def answers(self, split: str, predictions: np.ndarray) -> dict[str, str]:
    """Question id -> answer text for every question of `split`, from logits [windows, 2, length]."""
    predictions = np.asarray(predictions)
    if predictions.shape[0] != self.num_examples(split):
      raise ValueError(f"{predictions.shape[0]} rows of logits for the {self.num_examples(split)} windows "
                       f"of split {split!r}")
    return squad_scores.predict_answers(self.windows[split], predictions[:, 0], predictions[:, 1],
                                        n_best=self.task_config.n_best,
                                        max_answer_length=self.task_config.max_answer_length)

  def write_predictions(self, split, predictions, path) -> int:
    """Writes SQuAD's prediction file, {question id: answer text}, for every question of `split`."""
    answers = self.answers(split, predictions)
    text_files.write_text(path, json.dumps(answers, ensure_ascii=False, indent=1))
    return len(answers)

  def score_predictions(self, split: str, predictions: np.ndarray) -> dict:
    """SQuAD v1.1 exact match and F1 (%) over EVERY question of `split` (no answer scores 0),
    with the official normalisation and the "unicode" variant (keys ending in _unicode)."""
    if not self.labelled[split]:
      raise errors.ConfigError(f"split {split!r} ({self.paths[split]}) has questions without answers to score")
    answers = self.answers(split, predictions)
    official = squad_scores.evaluate(self.questions[split], answers, normalization="official")
    unicode = squad_scores.evaluate(self.questions[split], answers, normalization="unicode")
    return {"exact_match": official["exact_match"], "f1": official["f1"],
            "exact_match_unicode": unicode["exact_match"], "f1_unicode": unicode["f1"],
            "questions": official["questions"], "windows": self.num_examples(split)}

