"""The question-aware reader: question and context as two sequences through one body.

A model like jaxlm.models.Model (input layer, body, head; called as
`model(token_ids, *, train, carry, mask)`, carry () since its body is an encoder), for
extractive QA windows in the two-segment layout of jaxlm.data.qa_windows:
  token_ids [batch, length]: positions 0 .. P-1 the question (right-padded), P .. the null
  position then the context (right-padded); P = question_positions.
  features float32 [batch, length, match_features.NUM_FEATURES]: each context token's
  exact-match features (zeros elsewhere; None = all zeros, as init traces it).
The input layer embeds the whole window once (so a sparse embedding view and embedding
dropout work as for Model); the head adds the question-aware parts to the context's
vectors (jaxlm.models.heads.reader); the SAME body (one set of parameters) encodes the
question and the context, each as its own right-padded sequence, so any body family (a
transformer, a BiLSTM, a TCN, or none) reads it without knowing about questions; the head
scores every context position against the pooled question.

Output: span logits float32 [batch, 2, length] as the concatenation span head's, with
question and padding positions at span.MASKED_LOGIT, so the span task's loss,
post-processing and predictions read either model alike.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxlm.data import match_features
from jaxlm.models import layers
from jaxlm.models.heads import span


class Reader(nn.Module):
  input_layer: nn.Module
  body: nn.Module
  head: nn.Module  # jaxlm.models.heads.reader.ReaderHead
  question_positions: int
  embedding_dropout: float = 0.0

  def initial_carry(self, batch_size: int):
    return self.body.initial_carry(batch_size, self.input_layer.width)

  def __call__(self, token_ids, *, train: bool, carry=None, mask=None, features=None, decode: bool = False):
    """token_ids int32 [batch, length] -> (span logits float32 [batch, 2, length], carry)."""
    if decode:
      raise ValueError("the reader encodes whole windows; it has no incremental decoding")
    batch_size, length = token_ids.shape
    split = self.question_positions
    if mask is None:
      mask = jnp.ones((batch_size, length), bool)
    if features is None:
      features = jnp.zeros((batch_size, length, match_features.NUM_FEATURES), jnp.float32)
    vectors = layers.embed(self, self.input_layer, token_ids, train=train, embedding_dropout=self.embedding_dropout)
    question_mask, context_mask = mask[:, :split], mask[:, split:]
    context_inputs = self.head.question_aware_inputs(vectors[:, split:], vectors[:, :split], question_mask,
                                                     features[:, split:], train=train)
    carry = self.initial_carry(batch_size)  # the body is an encoder: every window starts afresh
    question_states, _ = self.body(vectors[:, :split], train=train, carry=carry, mask=question_mask)
    context_states, carry = self.body(context_inputs, train=train, carry=carry, mask=context_mask)
    scores = self.head(context_states, question_states, question_mask=question_mask, train=train)
    logits = jnp.concatenate([jnp.zeros((batch_size, 2, split), jnp.float32), scores], axis=-1)
    # Only context positions (the null one first) can be a start or an end.
    is_context = mask & (jnp.arange(length) >= split)[None, :]
    return jnp.where(is_context[:, None, :], logits, span.MASKED_LOGIT), carry
