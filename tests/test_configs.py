"""Every config file builds, with each variant, into a model that runs.

Data-free and fast: models are built on a tiny vocabulary and no corpus is read
(the end-to-end tests train). A new file in configs/ is picked up automatically,
with its `smoke` variant; other variants are listed in VARIANTS.
"""

import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.models.heads import adaptive_softmax, tagging
from jaxlm.training import optim
from jaxlm.data import corpora, text_files
from jaxlm.models import BODIES, build_model

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
# Grid configs (compare_*.py) list runs for launch/compare.py, not a model: tests/test_compare.py builds them.
CONFIG_NAMES = sorted(name[:-3] for name in os.listdir(CONFIG_DIR)
                      if name.endswith(".py") and name not in ("common.py", "__init__.py")
                      and not name.startswith("compare_"))
# Variants besides `smoke`, each tried with `smoke` (the full sizes are only traced).
VARIANTS = {
    "wt2_transformer": ("fast", "positions=rotary"),
    "wt2_heads": ("head=softmax", "head=cosine", "head=l2", "head=vmf"),
    "ru_lm": ("input=bag", "input=bpe", "head=softmax", "head=vmf"),
    "wt2_families": ("family=lstm", "family=tcn"),
    "wt2_mlm": ("body=lstm", "body=tcn", "head=vmf"),
    "ru_mlm": ("input=bag", "body=lstm"),
    "finetune": ("task=upos", "task=sst2", "task=xquad_ru", "task=xquad_en_to_ru", "task=csv", "task=conllu",
                 "task=squad_json", "task=squad_en", "body=lstm", "body=tcn", "body=fasttext", "start=fasttext", "start=frozen"),
}
VOCAB = 60  # the tiny test corpus's; the smoke adaptive cutoffs (20, 40) need more than 40
FULL_VOCAB = 33_278  # WikiText-2's: full sizes are only traced, so a real vocabulary costs nothing
BATCH = 2


def get_config(name: str, arg: str | None = None):
  return importlib.import_module(f"configs.{name}").get_config(arg)


def all_variants():
  for name in CONFIG_NAMES:
    for extra in (None,) + VARIANTS.get(name, ()):
      yield name, extra


def test_every_config_file_is_found():
  assert {"quickstart", "wt2_transformer", "wt2_lstm", "ptb_lstm", "ptb_tcn", "wt2_tcn"} <= set(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_unknown_variants_and_keys_fail(name):
  with pytest.raises(ValueError, match="unknown variant"):
    get_config(name, "smok")
  config = get_config(name, "smoke")
  with pytest.raises(AttributeError):
    config.train.seq_length = 16  # a misspelling of seq_len
  with pytest.raises(AttributeError):
    config.model[config.model.family].num_layer = 1


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_only_the_chosen_body_has_keys(name):
  """A body section nothing reads would be a dead key."""
  model = get_config(name).model
  assert model.family in BODIES
  assert [family for family in BODIES if family in model] == [model.family]


def test_a_family_without_its_section_is_an_error_not_the_body_class_defaults():
  """config.model.family = "lstm" on a config with no model.lstm section used to build
  LSTMBody's own defaults, AWD-LSTM's 3 x 1150, whatever the config's size (colab/compare_runs.ipynb's
  "smoke" LSTM was one: 1.7 s a step). The section names the body's size, so it must exist."""
  config = get_config("quickstart", "smoke")
  config.unlock()
  config.model.family = "lstm"
  with pytest.raises(ValueError, match=r"model\.family='lstm'.*no model\.lstm section.*use_body"):
    build_model(config.model, VOCAB)


def build_config_model(config, vocab_size: int, **fields):
  """config's model; a fine-tuning config, which names no language-model head, with a tagging
  head of vocab_size tags in place of its task's (logits at every position, as a softmax's)."""
  if "head" in config.model:
    return build_model(config.model, vocab_size, **fields)
  return build_model(config.model, vocab_size, head=tagging.TaggingHead(num_tags=vocab_size), **fields)


def head_name(config) -> str:
  return config.model.get("head", "softmax")  # a fine-tuning config's stand-in head scores like a softmax


@pytest.mark.parametrize("name,extra", list(all_variants()))
def test_full_size_model_traces_at_the_training_length(name, extra):
  """The real sizes fit the body (fields, heads, max_length >= seq_len), traced without compute."""
  config = get_config(name, extra)
  body = config.model[config.model.family]
  if body.get("attention_implementation") == "cudnn" and jax.default_backend() != "gpu":
    body.attention_implementation = "xla"  # the same shapes; cuDNN cannot even be traced without a GPU
  model = build_config_model(config, FULL_VOCAB)
  token_ids = jnp.zeros((1, config.train.seq_len), jnp.int32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), token_ids, train=False))
  assert variables["params"]
  if "max_length" in body and body.positions != "relative":
    assert body.max_length >= config.train.seq_len


@pytest.mark.parametrize("name,extra", list(all_variants()))
def test_smoke_builds_and_runs(name, extra):
  config = get_config(name, "smoke" if extra is None else f"{extra},smoke")
  assert config.is_locked
  assert config.train.steps <= 10 and config.model.width <= 64 and config.train.max_minutes == 0
  assert config.train.batch_size % jax.device_count() == 0
  model = build_config_model(config, VOCAB)
  token_ids = jax.random.randint(jax.random.key(0), (BATCH, config.train.seq_len), 0, VOCAB)
  variables = model.init(jax.random.key(1), token_ids, train=False)
  carry = model.initial_carry(BATCH)
  # A carried body must be trained on contiguous streams, or its state would be meaningless
  # (fine-tuning tasks, which read no corpus, use encoders, which carry nothing).
  if jax.tree.leaves(carry):
    assert config.data.batching == "stream"
  outputs = {}
  for train in (True, False):
    outputs[train], new_carry = model.apply(variables, token_ids, train=train, carry=carry,
                                            rngs={"dropout": jax.random.key(2)} if train else None)
    assert jax.tree.structure(new_carry) == jax.tree.structure(carry)
    leaf_shapes = lambda tree: [leaf.shape for leaf in jax.tree.leaves(tree)]
    assert leaf_shapes(new_carry) == leaf_shapes(carry)
    # Logits (the adaptive head's for the frequent words), or an embedding head's predicted
    # vectors, reach the loss in float32.
    predicted = (outputs[train] if head_name(config) == "softmax" else
                 outputs[train]["head_logits"] if head_name(config) == "adaptive" else outputs[train]["vectors"])
    assert predicted.shape[:2] == (BATCH, config.train.seq_len)
    assert predicted.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(predicted)))
  if head_name(config) == "softmax":
    assert outputs[False].shape == (BATCH, config.train.seq_len, VOCAB)
  if head_name(config) == "adaptive":
    assert adaptive_softmax.log_probs(outputs[False]).shape == (BATCH, config.train.seq_len, VOCAB)
  # The optimiser and schedule the config names exist and update these parameters.
  optimizer = optim.build_optimizer(config.optim, config.train.steps, config.model)  # as the trainer builds it
  params = variables["params"]
  # Lazy embedding updates are given the rows a step read: here every row of the table.
  touched = ({"touched_rows": jnp.arange(params["input_layer"]["table"].shape[0])}
             if optim.lazy_embeddings(config.optim) else {})
  updates, _ = optimizer.update(params, optimizer.init(params), params, **touched)
  assert jax.tree.structure(updates) == jax.tree.structure(params)


@pytest.mark.parametrize("name", [name for name in CONFIG_NAMES
                                  if "data" in get_config(name) and get_config(name).data.corpus == "ptb"])
def test_ptb_path_is_the_users(name):
  """PTB is never shipped: the default path is empty and fails saying how to get it."""
  config = get_config(name, "smoke")
  assert config.data.path == ""
  with pytest.raises(text_files.DataError, match="ptb"):
    corpora.resolve_files(config.data)


@pytest.mark.parametrize("body", ["transformer", "lstm", "tcn"])
def test_a_masked_lm_checkpoint_fits_the_fine_tuning_encoder(body):
  """configs/ru_mlm.py pre-trains what configs/finetune.py:start=checkpoint restores (input layer, body)."""
  shapes = {}
  for name, arg in (("ru_mlm", f"input=bag,body={body}"), ("finetune", f"body={body},start=checkpoint")):
    config = get_config(name, arg)
    model = build_config_model(config, FULL_VOCAB, subword_width=8)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32), train=False))
    shapes[name] = jax.tree.map(lambda leaf: leaf.shape,
                                {scope: variables["params"][scope] for scope in ("input_layer", "body")})
  assert shapes["ru_mlm"] == shapes["finetune"]
