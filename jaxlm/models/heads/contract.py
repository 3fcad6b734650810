"""What every language-model head gives the rest of jaxlm, in one record per head.

A language-model head scores every position's next (or masked) word. Each head module
(softmax.py, adaptive_softmax.py, embedding.py) builds one `LanguageModelHead` and the
registry (jaxlm.models.heads.LANGUAGE_MODEL_HEADS) names it; nothing else branches on the
head's name or on the structure of its outputs.
"""

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class LanguageModelHead:
  # The Linen module: head(states [batch, length, width], *, input_layer, train, mask) -> outputs,
  # built with vocab_size, embedding_width, tie_embeddings, dtype and `fields(model_config)`.
  module: type
  # model config -> the module's own fields beyond the four every head takes.
  fields: Callable[[Any], dict]
  # model config -> loss(outputs, targets int [batch, length], weights [batch, length]) -> float32
  # sums {"loss_sum", "count"}, with the config's loss settings bound.
  loss: Callable[[Any], Callable]
  # (outputs, targets int [...], *, chunk_size) -> int32 [...]: each target's 0-based rank among
  # all words, ties broken towards the lower id as lax.top_k breaks them.
  target_ranks: Callable
  # (outputs, *, k, chunk_size) -> int32 [..., k]: the best k word ids, best first.
  top_words: Callable
  # outputs at one position (length 1) -> float32 [batch, vocab] scores whose order and softmax
  # sampling reads (log-probabilities for the softmax heads, cosines for the embedding heads).
  next_token_scores: Callable
  # (outputs over [batch, length, ...], index) -> the same structure at position `index`
  # (length 1; index may be traced). Per-word tables that are not per position stay whole.
  at_position: Callable
