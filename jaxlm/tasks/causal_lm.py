"""Causal language modelling: predict each next token of a corpus (the pre-training task).

Data: a word-level or BPE corpus (jaxlm.data.corpora) as one flat token array per split;
training batches are random windows or contiguous streams (config.data.batching,
jaxlm.data.lm_batches), evaluation scores every target of a split exactly once with the
body's state carried along each row. Any output head: softmax, adaptive softmax, or an
embedding head with a cosine / L2 / vMF loss (config.model.head). Best checkpoint: the
lowest validation perplexity.
"""

from jaxlm import errors, metrics
from jaxlm.models import heads
from jaxlm.models.heads import ranking
from jaxlm.starts import fasttext_rows
from jaxlm.data import corpora, lm_batches
from jaxlm.tasks import base


def batch_loss(model_config):
  """loss(outputs, batch) -> sums: model.head's loss on a batch's targets and weights."""
  token_loss = heads.language_model_head(model_config).loss(model_config)
  return lambda outputs, batch: token_loss(outputs, batch["targets"], batch["weights"])


class CausalLM(base.Task):
  best_metric, best_mode = "perplexity", "min"
  splits = corpora.SPLITS
  re_encodes = True

  def __init__(self, config, sentencepiece_model: str = ""):
    """sentencepiece_model: a ready .model for a data.tokenizer="bpe" corpus (corpora.load_corpus)."""
    fasttext_rows.check_config(config.model)  # before a long corpus preparation
    self.corpus = corpora.load_corpus(config.data, sentencepiece_model)
    self.words = self.corpus.vocabulary.words
    self.sentencepiece_model = self.corpus.sentencepiece_model
    self.length = config.train.seq_len
    self.batcher = lm_batches.get_batcher(config.data.batching)
    self.head = heads.language_model_head(config.model)
    self.token_loss = self.head.loss(config.model)
    self.chunk_size = config.train.neighbour_chunk_size

  @property
  def fingerprint(self):
    return self.corpus.fingerprint  # the corpus files' content, and the tokenizer's settings

  def use_vocabulary(self, words: list[str]) -> None:
    """Re-encodes the splits with a saved run's vocabulary (ids in its order; a word it lacks ->
    its <unk>), so a model is scored on the ids it was trained with. A split holding a word
    the saved vocabulary lacks, without an <unk>, cannot be scored: eval_batches says so."""
    import numpy as np
    position = {word: index for index, word in enumerate(words)}
    mapping = np.asarray([position.get(word, position.get("<unk>", -1)) for word in self.words], np.int32)
    self.corpus.splits = {split: mapping[ids] for split, ids in self.corpus.splits.items()}
    self.unscorable = {split: int(np.sum(ids < 0)) for split, ids in self.corpus.splits.items() if np.any(ids < 0)}
    self.words = list(words)

  def build_model(self, model_config):
    from jaxlm.models import build_model
    return build_model(model_config, len(self.words),
                       subword_width=fasttext_rows.subword_width(model_config, self.words))

  def init_inputs(self):
    import numpy as np
    return np.zeros((1, self.length), np.int32)

  def train_batch(self, step, *, seed, batch_size, process_index=0, process_count=1):
    return self.batcher(self.corpus.splits["train"], step, seed=seed, batch_size=batch_size, length=self.length,
                        process_index=process_index, process_count=process_count)

  def eval_batches(self, split, *, batch_size, limit=0, length=None):
    """length: the segment length (default train.seq_len); state is carried along each row."""
    base.check_split(split, self.corpus.splits)
    if getattr(self, "unscorable", {}).get(split):
      raise errors.DataError(f"split {split!r} has {self.unscorable[split]} tokens the run's saved vocabulary lacks, "
                             "and it has no <unk>: it cannot be scored with this checkpoint")
    return lm_batches.evaluation_batches(self.corpus.splits[split], batch_size=batch_size,
                                         length=length or self.length, max_tokens=limit)

  def loss(self, outputs, batch):
    return self.token_loss(outputs, batch["targets"], batch["weights"])

  def eval_sums(self, outputs, batch):
    sums = self.loss(outputs, batch)
    # Top-1 / top-5 the same way for every head (largest logits, or nearest target vectors),
    # so heads compare on one measure; replaces a softmax loss's own argmax `correct`.
    ranks = self.head.target_ranks(outputs, batch["targets"], chunk_size=self.chunk_size)
    sums.update(ranking.accuracy_sums(ranks, batch["weights"]))
    return sums

  def summarise(self, sums):
    return metrics.summarise(sums)

  def describe(self, summary):
    return (f"loss {summary['loss']:.4f} perplexity {summary['perplexity']:.2f} "
            f"accuracy {summary['accuracy']:.4f} top-5 {summary['accuracy_top5']:.4f}")
