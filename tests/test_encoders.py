"""Encoders: every body with causal=False, and right-padding masks for every body.

An encoder's output at a position depends on the whole sequence; with a mask
(bool [batch, length], False at right-padding) no body's outputs at real tokens
depend on the padding's content or amount, causal or not.

Speed: models run eagerly, and an eager op compiled for one shape is reused by every
later model with that shape, so every test here uses batches of ROWS x LENGTH tokens
(or ROWS x LONG): a new shape costs seconds on a busy 2-core machine, a reused one little.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.models import lstm, transformer
from tests.model_helpers import VOCAB, assert_bidirectional, build, init, tokens

ROWS, LENGTH, LONG = 6, 5, 9
ATTENTION = dict(num_layers=2, num_heads=2, mlp_ratio=2, dropout=0.0, max_length=16)
RECURRENT = dict(num_layers=2, hidden_size=24, weight_drop=0.0, dropout_input=0.0, dropout_between=0.0,
                 dropout_output=0.0)
CONVOLUTION = dict(num_layers=2, hidden_size=24, kernel_size=3, dropout=0.0, dropout_input=0.0)
ENCODERS = {
    "transformer": dict(ATTENTION, causal=False),
    "lstm": dict(RECURRENT, causal=False),
    "tcn": dict(CONVOLUTION, causal=False),
    "none": dict(causal=False),
}
# A negligible attention-dropout rate sends training through the explicit softmax path.
EXPLICIT = dict(attention_dropout=1e-9)
DROPOUT_RNG = {"dropout": jax.random.key(7)}
# Real tokens per row; a row of padding alone (a filler row of a last partial batch) must stay finite.
REAL_LENGTHS = (5, 3, 0, 4, 1, 2)
SENTENCES = [np.asarray(tokens(batch=1, length=LENGTH, seed=1 + index))[0, :real]
             for index, real in enumerate(REAL_LENGTHS)]


class StatesHead(nn.Module):
  """A task head's stand-in: hands back the body's states and the mask it was given."""

  def __call__(self, states, *, input_layer, train: bool, mask=None):
    del input_layer, train
    return {"states": states, "mask": mask}


def build_encoder(family: str, **body):
  """The family's Model with StatesHead, so outputs are states [batch, length, width]."""
  return build(family, **body).clone(head=StatesHead())


def states(model, params, token_ids, *, train: bool = False, mask=None):
  rngs = DROPOUT_RNG if train else None
  outputs, _ = model.apply({"params": params}, token_ids, train=train, mask=mask, rngs=rngs)
  return np.asarray(outputs["states"])


def length_mask(lengths, length: int = LENGTH):
  """bool [len(lengths), length]: True at the first lengths[row] positions of each row."""
  return jnp.arange(length)[None, :] < jnp.array(lengths)[:, None]


def right_padded(length: int, seed: int):
  """SENTENCES right-padded to `length` with random ids: (ids [ROWS, length], mask)."""
  ids = np.array(tokens(batch=ROWS, length=length, seed=seed))
  for index, sentence in enumerate(SENTENCES):
    ids[index, :len(sentence)] = sentence
  return jnp.asarray(ids), length_mask(REAL_LENGTHS, length)


# --- encoders see the whole sequence ----------------------------------------------------------------------


@pytest.mark.parametrize("family, body", [
    ("transformer", ENCODERS["transformer"]),
    ("transformer", dict(ENCODERS["transformer"], positions="relative")),
    ("lstm", ENCODERS["lstm"]),
    ("tcn", ENCODERS["tcn"]),  # reaches 6 positions each way: all of the sequence
], ids=["transformer", "transformer_relative", "lstm", "tcn"])
def test_encoders_see_the_future(family, body):
  model = build(family, **body)
  token_ids = tokens(batch=1, length=LENGTH)
  assert model.initial_carry(1) == ()
  # assert_bidirectional calls with LENGTH + 1 = ROWS variants of the row.
  assert_bidirectional(model, init(model, tokens(batch=ROWS, length=LENGTH)), token_ids)


@pytest.mark.parametrize("train", [False, True], ids=["fused", "explicit"])
def test_encoder_attention_band_is_symmetric(train):
  model = build_encoder("transformer", **dict(ENCODERS["transformer"], num_layers=1, attention_window=2,
                                              **EXPLICIT))
  token_ids = tokens(batch=1, length=LENGTH)
  # One call: row 0 as it is, row 1 + t with token t changed.
  variants = jnp.concatenate([token_ids] + [token_ids.at[:, t].add(1) for t in range(LENGTH)])  # [6, 5]
  outputs = states(model, init(model, variants), variants, train=train)
  for t in range(LENGTH):
    moved = [not np.array_equal(outputs[0, position], outputs[1 + t, position]) for position in range(LENGTH)]
    assert moved == [abs(position - t) < 2 for position in range(LENGTH)], (t, moved)


def test_relative_shift_indexes_an_encoders_scores_by_signed_distance():
  length = 4
  by_distance = jnp.broadcast_to(jnp.arange(length - 1, -length, -1.0), (length, 2 * length - 1))
  shifted = transformer.relative_shift(by_distance)[:, :length]
  np.testing.assert_array_equal(shifted, np.arange(length)[:, None] - np.arange(length)[None, :])


def test_relative_encoder_tells_left_from_right():
  # With encodings of |i - j| alone, reversing the sequence would reverse the outputs
  # (up to rounding). Position weights are scaled up so positions matter at init.
  model = build_encoder("transformer", **dict(ENCODERS["transformer"], positions="relative"))
  token_ids = tokens(batch=ROWS, length=LENGTH)
  params = jax.tree_util.tree_map_with_path(
      lambda path, leaf: 30 * leaf if "relative_key" in str(path) or "position_bias" in str(path) else leaf,
      init(model, token_ids))
  outputs = states(model, params, token_ids)
  reversed_outputs = states(model, params, token_ids[:, ::-1])
  assert np.abs(outputs - reversed_outputs[:, ::-1]).max() > 1e-2


# --- padding never reaches real tokens --------------------------------------------------------------------


@pytest.mark.parametrize("family, body, train", [
    ("transformer", ENCODERS["transformer"], False),
    ("transformer", dict(ENCODERS["transformer"], **EXPLICIT), True),
    ("transformer", dict(ENCODERS["transformer"], positions="relative"), False),
    ("transformer", dict(ENCODERS["transformer"], attention_window=2), False),
    ("transformer", dict(ATTENTION), False),
    ("transformer", dict(ATTENTION, **EXPLICIT), True),
    ("lstm", ENCODERS["lstm"], False),
    ("lstm", RECURRENT, False),
    ("tcn", ENCODERS["tcn"], False),
    ("tcn", CONVOLUTION, False),
    ("none", ENCODERS["none"], False),
], ids=["transformer_fused", "transformer_explicit", "transformer_relative", "transformer_banded",
        "causal_transformer_fused", "causal_transformer_explicit", "lstm", "causal_lstm", "tcn", "causal_tcn",
        "none"])
def test_outputs_at_real_tokens_do_not_depend_on_padding(family, body, train):
  model = build_encoder(family, **body)
  short_ids, short_mask = right_padded(LENGTH, seed=10)  # the first row has no padding
  long_ids, long_mask = right_padded(LONG, seed=11)  # other filler ids, more padding
  params = init(model, long_ids)
  short = states(model, params, short_ids, train=train, mask=short_mask)
  long = states(model, params, long_ids, train=train, mask=long_mask)
  assert np.isfinite(short).all() and np.isfinite(long).all()  # padded rows and queries too
  for index, real in enumerate(REAL_LENGTHS):
    np.testing.assert_allclose(long[index, :real], short[index, :real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family, body", [
    ("transformer", ATTENTION), ("transformer", dict(ATTENTION, positions="relative")),
    ("lstm", RECURRENT), ("tcn", CONVOLUTION),
], ids=["transformer", "transformer_relative", "lstm", "tcn"])
def test_an_all_real_mask_changes_nothing_for_causal_bodies(family, body):
  model = build_encoder(family, **body)
  token_ids = tokens(batch=ROWS, length=LENGTH)
  params = init(model, token_ids)
  np.testing.assert_allclose(states(model, params, token_ids, mask=length_mask([LENGTH] * ROWS)),
                             states(model, params, token_ids), rtol=1e-6, atol=1e-6)


def test_causal_lstm_carry_is_the_state_after_the_last_real_token():
  # The same rows padded by different amounts end in the same carry: the padding is skipped.
  model = build_encoder("lstm", **RECURRENT)
  short_ids, short_mask = right_padded(LENGTH, seed=10)
  long_ids, long_mask = right_padded(LONG, seed=11)
  (_, long_carry), variables = model.init_with_output({"params": jax.random.key(0)}, long_ids, train=False,
                                                      mask=long_mask)
  _, short_carry = model.apply(variables, short_ids, train=False, mask=short_mask)
  jax.tree.map(lambda long, short: np.testing.assert_allclose(long, short, rtol=1e-5, atol=1e-6),
               long_carry, short_carry)
  np.testing.assert_array_equal(long_carry[0][1][2], 0.0)  # a row of padding alone stays at the start state


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [0, 2])
def test_explicit_attention_path_matches_the_fused_one_with_padding(causal, window):
  attention = transformer.SelfAttention(2, 2, window=window, dropout=1e-9, causal=causal)
  x = jax.random.normal(jax.random.key(0), (ROWS, LENGTH, 16))
  valid = length_mask(REAL_LENGTHS)  # [batch, length]
  params = attention.init(jax.random.key(1), x)
  fused = attention.apply(params, x, train=False, context_valid=valid)
  explicit = attention.apply(params, x, train=True, context_valid=valid, rngs=DROPOUT_RNG)
  assert np.isfinite(fused).all() and np.isfinite(explicit).all()
  np.testing.assert_allclose(np.where(valid[..., None], explicit, 0), np.where(valid[..., None], fused, 0),
                             rtol=1e-5, atol=1e-6)


# --- errors, carries, families x inputs -------------------------------------------------------------------


def shapes_only(model):
  """Traces init without computing: the checks below fail while tracing."""
  return jax.eval_shape(lambda: init(model, tokens()))


def test_memory_needs_a_causal_transformer():
  model = build("transformer", **dict(ENCODERS["transformer"], positions="relative", memory_length=4))
  with pytest.raises(ValueError, match=r"memory_length > 0 needs model\.transformer\.causal=True"):
    shapes_only(model)


def test_a_two_sided_convolution_needs_an_odd_kernel():
  with pytest.raises(ValueError, match=r"model\.tcn\.kernel_size=4 with model\.tcn\.causal=False"):
    shapes_only(build("tcn", **dict(ENCODERS["tcn"], kernel_size=4)))
  shapes_only(build("tcn", **dict(CONVOLUTION, kernel_size=4)))  # causal: any kernel size


def test_bidirectional_lstm_concatenates_half_sized_directions_and_carries_nothing():
  model = build("lstm", **dict(ENCODERS["lstm"], hidden_size=7))  # odd: forward 4, backward 3
  token_ids = tokens(batch=ROWS, length=LENGTH)
  (outputs, carry), variables = model.init_with_output({"params": jax.random.key(0)}, token_ids, train=False,
                                                       carry=())
  first = variables["params"]["body"]["layer_0"]
  assert first["forward"]["recurrent_kernel"].shape == (4, 16)
  assert first["backward"]["recurrent_kernel"].shape == (3, 12)
  last = variables["params"]["body"]["layer_1"]
  assert last["backward"]["input_kernel"].shape == (7, 32)  # width 16: 8 + 8
  assert lstm.BidirectionalLSTMLayer(7).direction_sizes() == (4, 3)
  assert model.initial_carry(ROWS) == () and carry == ()
  assert outputs.shape == (ROWS, LENGTH, VOCAB)


def test_the_none_body_returns_the_input_vectors():
  model = build_encoder("none", **ENCODERS["none"])
  token_ids = tokens(batch=ROWS, length=LENGTH)
  params = init(model, token_ids)
  assert set(params) == {"input_layer"}
  np.testing.assert_array_equal(states(model, params, token_ids), params["input_layer"]["table"][token_ids])
  assert model.initial_carry(ROWS) == ()


def test_the_head_gets_the_mask_only_when_one_is_given():
  model = build_encoder("none", **ENCODERS["none"])
  token_ids = tokens(batch=ROWS, length=LENGTH)
  params = init(model, token_ids)
  outputs, _ = model.apply({"params": params}, token_ids, train=False)
  assert outputs["mask"] is None
  mask = length_mask(REAL_LENGTHS)
  outputs, _ = model.apply({"params": params}, token_ids, train=False, mask=mask)
  np.testing.assert_array_equal(outputs["mask"], mask)


@pytest.mark.parametrize("input_layer", ["word", "bag"])
@pytest.mark.parametrize("family", sorted(ENCODERS))
def test_every_input_layer_feeds_every_encoder(family, input_layer):
  model = build(family, input_layer=input_layer, **ENCODERS[family])
  token_ids = tokens(batch=ROWS, length=LENGTH)
  # Variables, not params alone: a bag has "frozen" ids too. The softmax head takes no mask.
  (logits, carry), variables = model.init_with_output({"params": jax.random.key(0)}, token_ids, train=False)
  assert logits.shape == (ROWS, LENGTH, VOCAB) and np.isfinite(logits).all() and carry == ()
  encoded, _ = model.clone(head=StatesHead()).apply(variables, token_ids, train=False,
                                                    mask=length_mask(REAL_LENGTHS))
  assert encoded["states"].shape == (ROWS, LENGTH, 16) and np.isfinite(encoded["states"]).all()
