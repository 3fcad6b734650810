"""Model families behind one contract, assembled from config.

Every model, a language model or a fine-tuned one, is input layer -> body -> head:
  input layer: token ids [batch, length] -> vectors [batch, length, width]
  body:        (vectors, *, train, carry, mask=None) -> (states [batch, length, width], carry)
  head:        states -> what the loss reads (float32 logits, or predicted vectors)
A body's `carry` is a pytree of arrays whose leading axis is batch; all-zeros means
"start of a stream". Stateless bodies carry (). `body.initial_carry(batch_size, width)`
gets the input width because recurrent state (an LSTM's last layer, Transformer-XL
memory) is sized by it. The trainer never branches on family.

Every body has a field `causal` (a key of config.model.<family>). causal=True, the
default, is a language model's decoder: state t depends on tokens <= t. causal=False
is an encoder for masked-LM pre-training, classification, tagging and span QA: state
t depends on the whole sequence (bidirectional attention, a bidirectional LSTM,
two-sided convolutions), and the carry is () because an encoder sees whole sequences.
`mask` (bool [batch, length], True at real tokens, False at right-padding; None =
all real) keeps padding out of the states at real tokens in every body, causal or
not. Heads get it too (`head(states, *, input_layer, train, mask)`): a pooling head
needs it; a language-model head scores every position and leaves padding to the
loss's weights.

Incremental decoding (text generation, jaxlm.tools.generate): a causal body also has
`body.decode_cache(batch_size, width, length)`, the empty cache for decoding up to `length`
tokens, and a call with `decode=True` takes that cache as `carry` and returns the updated
one: calling it on a prefix and then on each next token gives, at every position, the
states one call over the whole sequence from the initial carry gives, with work per token
that does not grow with the number of tokens decoded (beyond attending to them). The
transformer's cache holds every layer's keys and values (and the position, an int32
scalar), the LSTM's is its carry, the TCN's each convolution's last inputs. Encoders
(causal=False) refuse. A body with a bounded number of positions (a transformer with
learned or sinusoidal positions) also has `decode_limit()`, that bound; a cache is never
longer (jaxlm.tools.generate slides a window past it). Training and evaluation never pass decode, so their paths are
unchanged.

Extractive QA's question-aware reader (jaxlm.models.reader.Reader) composes the same
parts another way: the input layer and one body encode the question and the context as two
sequences, and its head (jaxlm.models.heads.reader) relates them. It is called like Model,
with one more input, `features` (per-token floats [batch, length, features] from the batch,
passed by jaxlm.training.experiments.apply_model), and build_parts gives it its input layer
and body, so every body family and input layer works in it unchanged.

The body family "none" (jaxlm.models.identity) returns its input vectors unchanged:
with the FastText bag as input and a pooling task head it is the FastText baseline.

Families are looked up in explicit dicts, so a misspelled name fails with the list.
"""


import flax.linen as nn
import jax.numpy as jnp

from jaxlm import errors
from jaxlm.models import embedding_bag, embeddings, identity, layers, lstm, tcn, transformer
from jaxlm.models import heads

BODIES = {
    "transformer": transformer.Transformer,
    "lstm": lstm.LSTM,
    "tcn": tcn.TCN,
    # No body: the FastText baseline's input vectors go straight to the (pooling) head.
    "none": identity.Identity,
}
INPUT_LAYERS = {
    "word": embeddings.WordEmbedding,
    # FastText's composition: the mean of a word's row and its hashed character n-gram rows.
    "bag": embedding_bag.EmbeddingBag,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _lookup(registry: dict, name: str, key: str):
  if name not in registry:
    raise errors.ConfigError(f"config {key}={name!r} is not known; choose one of {sorted(registry)}")
  return registry[name]


class Model(nn.Module):
  """input layer -> body -> head, for every task: a language model or a fine-tuned tagger alike."""
  input_layer: nn.Module
  body: nn.Module
  head: nn.Module
  embedding_dropout: float = 0.0  # drop whole word types per step (layers.embedding_dropout_scale)

  def initial_carry(self, batch_size: int):
    return self.body.initial_carry(batch_size, self.input_layer.width)

  def decode_cache(self, batch_size: int, length: int):
    """The body's empty decode cache for up to `length` tokens (the contract above)."""
    return self.body.decode_cache(batch_size, self.input_layer.width, length)

  def decode_limit(self) -> int | None:
    """The most positions a decode cache can hold (the body's decode_limit), None when unbounded."""
    return self.body.decode_limit() if hasattr(self.body, "decode_limit") else None

  def __call__(self, token_ids, *, train: bool, carry=None, mask=None, decode: bool = False):
    """token_ids [batch, length] int32 -> (outputs, carry); mask bool [batch, length] or None (all real).

    decode=True: carry is a decode_cache (incremental decoding); outputs are the new positions'.
    """
    if carry is None:
      carry = self.decode_cache(token_ids.shape[0], token_ids.shape[1]) if decode else \
          self.initial_carry(token_ids.shape[0])
    vectors = layers.embed(self, self.input_layer, token_ids, train=train, embedding_dropout=self.embedding_dropout)
    states, carry = self.body(vectors, train=train, carry=carry, mask=mask, decode=decode)
    return self.head(states, input_layer=self.input_layer, train=train, mask=mask), carry


def build_model(model_config, vocab_size: int, *, subword_width: int = 1, head: nn.Module | None = None
                ) -> Model:
  """Builds the model named by `config.model`; each part's fields are its config keys.

  subword_width: for model.input="bag", the padded number of rows per word, decided from
  the vocabulary (jaxlm.starts.fasttext_rows.subword_width) so that init and restore shapes agree.
  head: a fine-tuning task's own head; None builds the language-model head model.head names
  (jaxlm.models.heads.LANGUAGE_MODEL_HEADS).
  """
  input_layer, body = build_parts(model_config, vocab_size, subword_width=subword_width)
  if head is None:
    dtype = DTYPES[model_config.compute_dtype]
    language_model_head = heads.language_model_head(model_config)
    head = language_model_head.module(vocab_size=vocab_size, embedding_width=model_config.width,
                                      tie_embeddings=model_config.tie_embeddings, dtype=dtype,
                                      **language_model_head.fields(model_config))
  return Model(input_layer=input_layer, body=body, head=head, embedding_dropout=model_config.embedding_dropout)


def build_parts(model_config, vocab_size: int, *, subword_width: int = 1) -> tuple[nn.Module, nn.Module]:
  """(input layer, body) of `config.model`, for a model that composes them itself (build_model,
  jaxlm.models.reader.Reader); subword_width as build_model's."""
  dtype = _lookup(DTYPES, model_config.compute_dtype, "model.compute_dtype")
  family = model_config.family
  body_class = _lookup(BODIES, family, "model.family")
  if family not in model_config:
    # The section is the body's size: without it the body class's own defaults (AWD-LSTM's 3 x 1150
    # for "lstm") would be built whatever the rest of the config says.
    raise errors.ConfigError(f"config model.family={family!r} has no model.{family} section, so nothing says "
                             f"the body's size: set the body with configs/common.py use_body(config, {family!r}, "
                             f"<fields>), or start from a config that has it (configs/wt2_families.py:family={family})")
  body_fields = dict(model_config[family])
  layers.check_remat(model_config.remat)
  try:
    body = body_class(**body_fields, dtype=dtype, remat=model_config.remat)
  except TypeError as error:
    raise errors.ConfigError(f"config model.{family} does not fit {body_class.__name__}: {error}") from error
  input_class = _lookup(INPUT_LAYERS, model_config.input, "model.input")
  input_fields = ({"bucket": model_config.bucket, "subword_width": subword_width}
                  if input_class is embedding_bag.EmbeddingBag else {})
  return input_class(vocab_size=vocab_size, width=model_config.width, dtype=dtype, **input_fields), body
