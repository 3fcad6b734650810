"""Token tagging from CoNLL-U treebanks: universal POS tags (UPOS) of every gold word.

Each sentence becomes <eos> + its words (the treebank's gold tokens, each normalised
to the vocabulary's form, never split), or with task.tokenizer="bpe" "</s>" + each
word's SentencePiece pieces, right-padded to task.max_length; the head gives tag
logits at every position and the loss reads each word's FIRST position (a word's other
pieces have weight 0), so a word is one target whatever its pieces. Scoring is
word-level accuracy over EVERY gold word of the split, as UD's evaluation scores UPOS
with gold tokenisation: a word whose first position is cut off by task.max_length
counts as wrong (the count is reported when the data is read), so truncation never
inflates the number.

Splits are the keys of task.files (file names inside task.path; an empty name leaves the
split out); "train" and "valid" are required. The tag set is the training split's; a tag outside it is an error.
"""

import jax.numpy as jnp
import numpy as np

from jaxlm import errors, metrics
from jaxlm.starts import fasttext_rows
from jaxlm.data import conllu, example_batches, text_files
from jaxlm.tasks import example_task, text_inputs


class Tagging(example_task.ExampleTask):
  best_metric, best_mode = "accuracy", "max"
  config_defaults = dict(
      path="", files=dict(train="train.conllu", valid="dev.conllu"),
      # As classification's; with "bpe" each gold word's label and score sit on its first piece.
      tokenizer="words", bpe_vocab_size=text_inputs.BPE_TASK_VOCAB_SIZE, sentencepiece_model="",
      max_vocab=0, max_length=128, head_hidden=0, head_dropout=0.1,
      length_multiple=0,  # as classification's: batches cut to a multiple of N positions; 0: max_length
  )
  unweighted_counts = ("gold_words",)

  def __init__(self, config):
    task = config.task
    self.splits = example_task.file_splits(task.files)
    if not task.path:
      raise errors.ConfigError(f"config task.path is empty: set it to the folder holding {dict(task.files)}")
    self.task_config = task
    self.paths = {split: text_files.find_file(task.path, task.files[split], f"config task.files.{split} names it"
                                              f"{example_task.optional_split_hint(split)}")
                  for split in self.splits}
    self.sentences = {split: conllu.read_conllu(path) for split, path in self.paths.items()}
    self.tags = sorted({tag for sentence in self.sentences["train"] for tag in sentence.upos})
    tag_index = {tag: position for position, tag in enumerate(self.tags)}
    words = {split: [[text_inputs.normalise_word(word, task.tokenizer) for word in sentence.words]
                     for sentence in sentences] for split, sentences in self.sentences.items()}
    fasttext_rows.check_config(config.model)
    self.tokenizer = text_inputs.task_tokenizer(
        config, words["train"], [word_list for split in self.splits if split != "train" for word_list in words[split]])
    self.words, self.sentencepiece_model = self.tokenizer.words, self.tokenizer.sentencepiece_model
    encoder = text_inputs.Encoder(self.tokenizer, task.max_length)
    # Per sentence, int32 [positions]: token ids; the gold tag at each word's first position
    # (0 elsewhere); and 1.0 at those first positions (the loss's and the accuracy's weights).
    self.token_ids, self.position_tags, self.first_positions, self.gold_words = {}, {}, {}, {}
    for split in self.splits:
      self.token_ids[split], self.position_tags[split], self.first_positions[split] = [], [], []
      for sentence, sentence_words in zip(self.sentences[split], words[split]):
        unknown = [tag for tag in sentence.upos if tag not in tag_index]
        if unknown:
          raise text_files.DataError(f"{self.paths[split]} line {sentence.first_line}: tag {unknown[0]!r} is not in "
                                     f"the training tag set {self.tags}")
        ids, first = encoder.ids_and_first(sentence_words)
        tags = np.zeros(len(ids), np.int32)
        tags[first] = np.asarray([tag_index[tag] for tag in sentence.upos], np.int32)[:int(first.sum())]
        self.token_ids[split].append(ids)
        self.position_tags[split].append(tags)
        self.first_positions[split].append(first.astype(np.float32))
      encoder.report(self.paths[split])
      self.gold_words[split] = np.array([len(sentence.words) for sentence in self.sentences[split]], np.float32)
    self.length, self.length_multiple = task.max_length, example_task.check_length_multiple(task)

  def head(self, model_config, dtype):
    from jaxlm.models.heads import tagging
    return tagging.TaggingHead(num_tags=len(self.tags), hidden_size=self.task_config.head_hidden,
                                  dropout=self.task_config.head_dropout, dtype=dtype)

  def num_examples(self, split):
    return len(self.token_ids[split])

  def _batch(self, split: str, indices: np.ndarray) -> dict:
    """Rows of sentences `indices`; -1 is a padding row. Position 0 is the start token; the
    weights are 1 at each word's first position (every word's only one, for word inputs)."""
    real = indices >= 0
    pick = lambda sequences: example_batches.pick(sequences, indices)
    inputs, mask = example_batches.padded_inputs(pick(self.token_ids[split]), self.length)
    weights = example_batches.pad(pick(self.first_positions[split]), self.length, dtype=np.float32)
    gold_words = np.where(real, self.gold_words[split][np.maximum(indices, 0)], 0.0).astype(np.float32)
    return {"inputs": inputs, "mask": mask,
            "tags": example_batches.pad(pick(self.position_tags[split]), self.length), "weights": weights,
            "gold_words": gold_words}

  def loss(self, logits, batch):
    """logits float32 [batch, length, tags]; tags int [batch, length]; weights [batch, length]."""
    from jaxlm.models.heads import tagging
    return tagging.loss(logits, batch["tags"], batch["weights"])

  def eval_sums(self, logits, batch):
    sums = self.loss(logits, batch)
    correct = (jnp.argmax(logits, axis=-1) == batch["tags"]).astype(jnp.float32)
    sums.update(correct=jnp.sum(correct * batch["weights"]), gold_words=jnp.sum(batch["gold_words"]))
    return sums

  def summarise(self, sums):
    summary = metrics.loss_summary(sums, "words")
    if "correct" in sums:
      # Over every gold word: truncated words (count < gold_words) are scored wrong.
      summary["accuracy"] = sums["correct"] / metrics.safe_count(sums, "gold_words")
    return summary

  def describe(self, summary):
    return f"loss {summary['loss']:.4f} UPOS accuracy {summary['accuracy']:.4f} over {int(summary['words'])} words"
