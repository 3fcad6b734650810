"""The question-aware reader's layers, after DrQA's (Chen et al., 2017): what a span head adds
when question and context are encoded as two sequences (jaxlm.models.reader puts them together).

Before the body, each context token gets
  - the aligned question embedding: an attention of the token's input vector over the
    question's input vectors, scores relu(W c_i) . relu(W q_j) with one shared W, so a context
    word is pulled towards the question words that resemble it ("Paris" towards "city");
  - the exact-match features (jaxlm.data.match_features: does its word occur in the question),
both projected to the model width and added to the token's own input vector, so every body
(none included) reads one vector per position as usual.
After the body, the question's states are pooled to one vector by self-attention
(b_j = softmax_j(w . q_j)), and each context state c_i scores the answer's start and end
bilinearly against it: start_i = c_i^T W_s q, end_i = c_i^T W_e q.

Question padding is masked out of both attentions (weights exactly 0, so changing a padded
position changes nothing), and a question with no real token attends to nothing (zeros).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlm.models import layers


def masked_attention(scores, mask):
  """softmax over the last axis of `scores` [..., keys] at mask's True keys; exactly 0 elsewhere."""
  scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
  return jax.nn.softmax(scores, axis=-1) * mask


class ReaderHead(nn.Module):
  """The reader's question-aware input (`question_aware_inputs`) and its span scores (`__call__`)."""
  reads_input_table = False  # evaluation may read the input layer through a packed view
  width: int  # the model width: the body's input and output
  dropout: float = 0.0
  dtype: Any = jnp.float32

  def setup(self):
    dense = lambda name, **fields: nn.Dense(self.width, dtype=self.dtype, kernel_init=layers.gpt2_init(),
                                            name=name, **fields)
    self.alignment = dense("alignment")  # W of the aligned question embedding, for context and question alike
    self.mixing = dense("mixing")  # [aligned embedding; features] -> the width, added to the input vector
    self.pooling = nn.Dense(1, dtype=self.dtype, kernel_init=layers.gpt2_init(), name="pooling")
    self.start = dense("start", use_bias=False)  # W_s
    self.end = dense("end", use_bias=False)  # W_e
    self.drop = layers.Dropout(self.dropout)

  def question_aware_inputs(self, context_vectors, question_vectors, question_mask, features, *, train: bool):
    """The body's context input [batch, context, width].

    context_vectors [batch, context, width], question_vectors [batch, question, width] (input
    vectors); question_mask bool [batch, question]; features float32 [batch, context, features].
    """
    context_vectors = self.drop(context_vectors, deterministic=not train)
    question_vectors = self.drop(question_vectors, deterministic=not train)
    keys = nn.relu(self.alignment(question_vectors))  # [batch, question, width]
    queries = nn.relu(self.alignment(context_vectors))  # [batch, context, width]
    scores = jnp.einsum("bcw,bqw->bcq", queries, keys).astype(jnp.float32)
    weights = masked_attention(scores, question_mask[:, None, :])  # [batch, context, question]
    aligned = jnp.einsum("bcq,bqw->bcw", weights.astype(question_vectors.dtype), question_vectors)
    mixed = self.mixing(jnp.concatenate([aligned, features.astype(aligned.dtype)], axis=-1))
    return context_vectors + mixed.astype(context_vectors.dtype)

  def __call__(self, context_states, question_states, *, question_mask, train: bool):
    """Start and end scores float32 [batch, 2, context] of every context position.

    context_states [batch, context, width], question_states [batch, question, width];
    question_mask bool [batch, question]. The caller masks the context's padding.
    """
    context_states = self.drop(context_states, deterministic=not train)
    question_states = self.drop(question_states, deterministic=not train)
    scores = self.pooling(question_states)[..., 0].astype(jnp.float32)  # [batch, question]
    weights = masked_attention(scores, question_mask)
    summary = jnp.einsum("bq,bqw->bw", weights.astype(question_states.dtype), question_states)  # [batch, width]
    starts = jnp.einsum("bcw,bw->bc", context_states, self.start(summary))
    ends = jnp.einsum("bcw,bw->bc", context_states, self.end(summary))
    return jnp.stack([starts, ends], axis=1).astype(jnp.float32)
