"""Evaluation with carried state equals scoring each row in one unbroken call.

jaxlm.training.evaluation.evaluate cuts a token stream into one contiguous row per device (4
simulated devices here) and reads each row in segments of `length`, carrying the
LSTM state or the Transformer-XL memory from one segment to the next. Where the
carry holds the whole history (always for an LSTM; for Transformer-XL when the
memory spans the row but its last segment), that must give the loss of one call
over the whole row.
"""

import jax
import numpy as np

from jaxlm.models.heads import softmax
from jaxlm.training import evaluation, experiments
from jaxlm.data import lm_batches
from tests.model_helpers import VOCAB, build

LENGTH = 8  # evaluation segment
ROW = 32  # tokens a row: 4 segments
PADDING = 5  # the last row is 5 targets short, so padding is scored with weight 0


def stream_and_reference(model, param_scale: float = 1.0):
  """Returns (evaluate's sums over the stream, the same sums from one call per row).

  param_scale multiplies every initial parameter: larger weights sharpen attention, so
  far context changes the loss by more than the summation-order noise.
  """
  mesh = experiments.make_mesh()
  rows = jax.device_count()
  num_targets = rows * ROW - PADDING
  tokens = np.asarray(jax.random.randint(jax.random.key(0), (num_targets + 1,), 0, VOCAB), np.int32)
  params = model.init(jax.random.key(1), tokens[None, :LENGTH], train=False)["params"]
  params = jax.tree.map(lambda leaf: leaf * param_scale, params)
  eval_step = evaluation.make_eval_step(
      model, lambda outputs, batch: softmax.cross_entropy(outputs, batch["targets"], batch["weights"]), mesh)
  batches = lm_batches.evaluation_batches(tokens, batch_size=rows, length=LENGTH)
  streamed = evaluation.evaluate(eval_step, model, mesh, params, {}, batches, rows=rows)

  pad = lambda values: np.concatenate([values, np.zeros(PADDING, values.dtype)]).reshape(rows, ROW)
  weights = pad(np.ones(num_targets, np.float32))
  logits, _ = model.apply({"params": params}, pad(tokens[:-1]), train=False)  # [rows, ROW, vocab]
  reference = softmax.cross_entropy(logits, pad(tokens[1:]), weights)
  return streamed, {key: float(value) for key, value in reference.items()}


def assert_same_loss(streamed, reference):
  assert streamed["count"] == reference["count"] == jax.device_count() * ROW - PADDING
  # Only the summation order differs: about 3e-7 relative, measured.
  np.testing.assert_allclose(streamed["loss_sum"], reference["loss_sum"], rtol=2e-6)


def test_lstm_state_carried_across_segments():
  model = build("lstm", num_layers=2, hidden_size=24)
  assert_same_loss(*stream_and_reference(model))


def test_transformer_xl_memory_spanning_the_row():
  model = build("transformer", num_layers=2, num_heads=2, positions="relative", max_length=LENGTH,
                memory_length=ROW - LENGTH)
  assert_same_loss(*stream_and_reference(model))


def test_transformer_xl_shorter_memory_sees_less():
  """With one segment of memory, later segments lose the start of the row: the losses differ.

  A tiny random model at its init scale barely uses far context (1e-5 relative, about
  the size of the tolerance below), so its weights are scaled up to sharpen attention.
  """
  model = build("transformer", num_layers=2, num_heads=2, positions="relative", max_length=LENGTH,
                memory_length=LENGTH)
  streamed, reference = stream_and_reference(model, param_scale=10.0)
  assert streamed["count"] == reference["count"]
  assert not np.isclose(streamed["loss_sum"], reference["loss_sum"], rtol=1e-3, atol=0)
