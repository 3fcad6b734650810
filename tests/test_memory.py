"""Memory switches: gradient accumulation (train.microbatches), rematerialisation (model.remat)
and bfloat16 compute change what is kept in memory, not what is learned; and neither they nor
the device count change the dropout masks (drawn per global row)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import smoke_config
from configs.common import base_config
from jaxlm.training import experiments, optim, steps
from jaxlm.models import build_model
from jaxlm.tasks import causal_lm
from model_helpers import VOCAB, model_config

ROWS, LENGTH = 8, 6

# Tiny bodies, dropout off. Transformer-XL and the causal LSTM carry state between steps; the encoders read a
# padding mask, as the masked LM and the fine-tuning tasks do.
BODIES = {
    "transformer_xl": dict(family="transformer", num_layers=2, num_heads=2, dropout=0.0, positions="relative",
                           memory_length=4),
    "lstm": dict(family="lstm", num_layers=2, hidden_size=16, weight_drop=0.0, dropout_input=0.0,
                 dropout_between=0.0, dropout_output=0.0),
    "tcn": dict(family="tcn", num_layers=2, hidden_size=16, kernel_size=2, dropout=0.0, dropout_input=0.0),
    "transformer_encoder": dict(family="transformer", num_layers=2, num_heads=2, dropout=0.0, causal=False),
    "lstm_encoder": dict(family="lstm", num_layers=1, hidden_size=16, weight_drop=0.0, dropout_input=0.0,
                         dropout_between=0.0, dropout_output=0.0, causal=False),
}


def _config(body: dict, *, microbatches: int = 1, remat: str = "none"):
  config = base_config()
  fields = dict(body)
  config.model = model_config(fields.pop("family"), **fields)
  config.model.remat = remat
  config.train.batch_size, config.train.seq_len, config.train.microbatches = ROWS, LENGTH, microbatches
  # SGD: Adam's first step is about sign(gradient), which turns float summation-order noise
  # in near-zero gradients into lr-sized differences and hides what is compared.
  config.optim.name, config.optim.lr, config.optim.momentum, config.optim.warmup_steps = "sgd", 0.5, 0.0, 0
  return config


def _batches(encoder: bool):
  """Two consecutive steps of stream batches: every row starts a stream, then continues it.
  An encoder's batches are right-padded (a mask), with no weight on the padding."""
  rng = np.random.default_rng(0)
  batches = []
  for step in range(2):
    tokens = rng.integers(0, VOCAB, (ROWS, LENGTH + 1)).astype(np.int32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": np.ones((ROWS, LENGTH), np.float32),
             "reset": np.full((ROWS,), step == 0)}
    if encoder:
      real = np.arange(LENGTH)[None, :] < rng.integers(2, LENGTH + 1, (ROWS, 1))  # [rows, length]
      batch.update(mask=real, weights=real.astype(np.float32))
    batches.append(batch)
  return batches


def _two_steps(config, devices, encoder: bool):
  model = build_model(config.model, VOCAB)
  optimizer = optim.build_optimizer(config.optim, 10)
  mesh = experiments.make_mesh(devices)
  state = experiments.init_state(model, optimizer, config, mesh)
  step = steps.make_train_step(model, causal_lm.batch_loss(config.model), optimizer, mesh, state, config.seed,
                               microbatches=config.train.microbatches)
  metrics = []
  for batch in _batches(encoder):
    state, step_metrics = step(state, experiments.global_batch(mesh, batch))
    metrics.append(jax.device_get(step_metrics))
  return jax.device_get(state), metrics


# (body, devices, micro-batches): 2 devices x 4 rows in 2 micro-batches of 2 rows (the
# shard_map path with device-varying sums), or one device's 8 rows in 4 micro-batches of 2.
# Dropout off here; the other bodies, with dropout on, are compared on 4 devices x 2
# micro-batches by test_dropout_follows_the_global_row_not_the_device_count_or_micro_batch.
ACCUMULATION_CASES = [("lstm", 1, 4), ("transformer_encoder", 2, 2)]


@pytest.mark.parametrize("name,num_devices,microbatches", ACCUMULATION_CASES)
def test_accumulated_micro_batches_give_the_whole_batch_update(name, num_devices, microbatches):
  body, devices = BODIES[name], jax.devices()[:num_devices]
  encoder = body.get("causal") is False
  whole, whole_metrics = _two_steps(_config(body), devices, encoder)
  accumulated, accumulated_metrics = _two_steps(_config(body, microbatches=microbatches), devices, encoder)
  initial = jax.device_get(experiments.init_state(build_model(_config(body).model, VOCAB), optim.build_optimizer(
      _config(body).optim, 10), _config(body), experiments.make_mesh(devices)).params)
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(initial)))
  assert moved > 1e-3  # the comparison below is not vacuous
  for one, many in zip(jax.tree.leaves(whole.params), jax.tree.leaves(accumulated.params)):
    np.testing.assert_allclose(one, many, atol=1e-5, rtol=1e-5)
  # The state carried into the next step is every row's own, in the same order.
  if name in ("transformer_xl", "lstm"):
    assert any(np.any(leaf != 0) for leaf in jax.tree.leaves(whole.carry))  # there is state to compare
  for one, many in zip(jax.tree.leaves(whole.carry), jax.tree.leaves(accumulated.carry)):
    np.testing.assert_allclose(one, many, atol=1e-5, rtol=1e-5)
  for one, many in zip(whole_metrics, accumulated_metrics):
    for key in ("loss_sum", "count", "grad_norm"):
      np.testing.assert_allclose(one[key], many[key], rtol=1e-5)


def test_micro_batches_that_do_not_divide_a_device_batch_are_refused(tiny_corpus, cache_dir):
  # 8 rows on 4 devices: 2 rows a device, which 4 micro-batches cannot split.
  config = smoke_config(tiny_corpus, cache_dir, **{"train.microbatches": 4})
  with pytest.raises(ValueError, match=r"train\.microbatches=4 .* \(2 rows"):
    experiments.build_experiment(config)


REMAT_BODIES = {
    # Dropout on: remat must replay the same masks in the backward pass.
    "transformer_xl": dict(family="transformer", num_layers=2, num_heads=2, dropout=0.1, positions="relative",
                           memory_length=4, attention_dropout=0.1),
    "lstm": dict(family="lstm", num_layers=2, hidden_size=16, weight_drop=0.3, dropout_input=0.1,
                 dropout_between=0.1, dropout_output=0.1),
    "lstm_encoder": dict(family="lstm", num_layers=2, hidden_size=16, weight_drop=0.3, dropout_input=0.1,
                         dropout_between=0.1, dropout_output=0.1, causal=False),
    "tcn": dict(family="tcn", num_layers=2, hidden_size=16, kernel_size=2, dropout=0.1, dropout_input=0.1),
}


# Dropout on in every body (and embedding dropout): masks are drawn per row of the global batch
# from (seed, step, global row), and weight and word-type masks once per step, so neither the
# device count nor the micro-batching changes them. Compared: one device, whole batch, against
# 4 devices of 2 rows in 2 micro-batches of 1 row (one compile covers both changes).
DROPOUT_LAYOUTS = [(4, 2)]


def _dropout_config(name: str, microbatches: int = 1):
  config = _config(REMAT_BODIES[name], microbatches=microbatches)
  config.model.embedding_dropout = 0.1
  return config


@pytest.mark.parametrize("name", sorted(REMAT_BODIES))
def test_dropout_follows_the_global_row_not_the_device_count_or_micro_batch(name):
  encoder = REMAT_BODIES[name].get("causal") is False
  whole, whole_metrics = _two_steps(_dropout_config(name), jax.devices()[:1], encoder)
  for num_devices, microbatches in DROPOUT_LAYOUTS:
    other, other_metrics = _two_steps(_dropout_config(name, microbatches), jax.devices()[:num_devices], encoder)
    for one, many in zip(jax.tree.leaves(whole.params), jax.tree.leaves(other.params)):
      np.testing.assert_allclose(one, many, atol=1e-5, rtol=1e-5)
    for one, many in zip(jax.tree.leaves(whole.carry), jax.tree.leaves(other.carry)):
      np.testing.assert_allclose(one, many, atol=1e-5, rtol=1e-5)
    for one, many in zip(whole_metrics, other_metrics):
      np.testing.assert_allclose(one["loss_sum"], many["loss_sum"], rtol=1e-5)
  # Dropout is really on: without it the same two steps move the parameters elsewhere.
  no_dropout = _config({key: 0.0 if "drop" in key else value for key, value in REMAT_BODIES[name].items()})
  plain, _ = _two_steps(no_dropout, jax.devices()[:1], encoder)
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(plain.params),
                                                           jax.tree.leaves(whole.params))) > 1e-3


def test_a_run_resumed_on_another_device_count_repeats_the_uninterrupted_one():
  # Two steps on 4 devices; the same first step on 4 devices, then its state moved to 1 device
  # for the second step (what a resume from its checkpoint does): the same parameters.
  config, devices = _dropout_config("transformer_xl"), jax.devices()
  model, optimizer = build_model(config.model, VOCAB), optim.build_optimizer(config.optim, 10)
  batches = _batches(encoder=False)
  uninterrupted, _ = _two_steps(config, devices, encoder=False)
  mesh_four, mesh_one = experiments.make_mesh(devices), experiments.make_mesh(devices[:1])
  state = experiments.init_state(model, optimizer, config, mesh_four)
  step_four = steps.make_train_step(model, causal_lm.batch_loss(config.model), optimizer, mesh_four, state,
                                    config.seed)
  state, _ = step_four(state, experiments.global_batch(mesh_four, batches[0]))
  host_state = jax.device_get(state)
  moved = jax.device_put(host_state, experiments.state_shardings(mesh_one, host_state))
  step_one = steps.make_train_step(model, causal_lm.batch_loss(config.model), optimizer, mesh_one, moved,
                                   config.seed)
  resumed, _ = step_one(moved, experiments.global_batch(mesh_one, batches[1]))
  for one, many in zip(jax.tree.leaves(uninterrupted.params), jax.tree.leaves(jax.device_get(resumed.params))):
    np.testing.assert_allclose(one, many, atol=1e-5, rtol=1e-5)


def _gradients(body: dict, remat: str):
  config = _config(body, remat=remat)
  model = build_model(config.model, VOCAB)
  batch = _batches(encoder=False)[0]
  token_ids = jnp.asarray(batch["inputs"])
  params = model.init(jax.random.key(0), token_ids, train=False)["params"]
  loss = causal_lm.batch_loss(config.model)

  @jax.jit
  def gradient(params):
    def objective(params):
      outputs, _ = model.apply({"params": params}, token_ids, train=True, rngs={"dropout": jax.random.key(1)})
      return loss(outputs, batch)["loss_sum"]
    return jax.grad(objective)(params)

  return params, gradient(params)


@pytest.mark.parametrize("name", sorted(REMAT_BODIES))
def test_remat_changes_neither_the_parameters_nor_the_gradients(name):
  params, gradients = _gradients(REMAT_BODIES[name], "none")
  # Every policy goes through the same nn.remat wrapper of each layer; the policy that keeps
  # matrix products is checked where attention's products are (the suite's time, not coverage).
  policies = ("full", "dots_with_no_batch_dims_saveable") if name == "transformer_xl" else ("full",)
  for policy in policies:
    remat_params, remat_gradients = _gradients(REMAT_BODIES[name], policy)
    # The same tree, paths and initial values: checkpoints are interchangeable.
    assert jax.tree.structure(params) == jax.tree.structure(remat_params)
    jax.tree.map(np.testing.assert_array_equal, params, remat_params)
    # Recomputation replays the same operations (and dropout masks): the same gradient up to
    # float reassociation by XLA.
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7), gradients, remat_gradients)


def test_an_unknown_remat_policy_names_the_key():
  config = _config(REMAT_BODIES["tcn"], remat="everything")
  with pytest.raises(ValueError, match=r"model\.remat='everything'"):
    build_model(config.model, VOCAB)


def _saved_bytes(body: dict, remat: str) -> int:
  """Bytes of the residuals the forward pass keeps for the backward pass: the arrays that
  jax.vjp's backward function holds."""
  config = _config(body, remat=remat)
  model = build_model(config.model, VOCAB)
  token_ids = jnp.asarray(_batches(encoder=False)[0]["inputs"])
  params = model.init(jax.random.key(0), token_ids, train=False)["params"]
  objective = lambda params: model.apply({"params": params}, token_ids, train=True)[0].sum()
  backward = jax.eval_shape(lambda params: jax.vjp(objective, params)[1], params)  # shapes only: nothing runs
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(backward))


def test_remat_keeps_fewer_activations_for_the_backward_pass():
  # What remat changes: the residuals kept between the forward and the backward pass. (Whether
  # the compiled program's memory follows is the compiler's business: XLA:CPU's default
  # concurrency-optimised scheduler undoes it; BENCHMARKS.md measures both.)
  body = dict(family="transformer", num_layers=2, num_heads=2, dropout=0.0)
  saved = {remat: _saved_bytes(body, remat) for remat in ("none", "dots_saveable", "full")}
  assert saved["full"] < saved["dots_saveable"] < saved["none"]


# bfloat16 compute against float32 on the quickstart smoke config, step by step: 6 steps of
# AdamW from the same start on the same batches. Measured on the 2-core CPU: at most 4.5e-5
# relative apart (the losses and logits are float32 in both); the bound leaves 20x room.
BF16_LOSS_RTOL = 1e-3


def _smoke_losses(tiny_corpus, cache_dir, compute_dtype: str):
  config = smoke_config(tiny_corpus, cache_dir, **{"model.compute_dtype": compute_dtype})
  experiment = experiments.build_experiment(config)
  state = experiments.init_experiment_state(experiment)
  step = steps.make_train_step(experiment.model, experiment.task.loss, experiment.optimizer, experiment.mesh,
                               state, config.seed)
  losses = []
  for index in range(config.train.steps):
    batch = experiment.task.train_batch(index, seed=config.seed, batch_size=config.train.batch_size)
    state, step_metrics = step(state, experiments.global_batch(experiment.mesh, batch))
    losses.append(float(step_metrics["loss_sum"] / step_metrics["count"]))
  return np.asarray(losses)


def test_bfloat16_compute_tracks_float32_on_the_smoke_config(tiny_corpus, cache_dir):
  float32 = _smoke_losses(tiny_corpus, cache_dir, "float32")
  bfloat16 = _smoke_losses(tiny_corpus, cache_dir, "bfloat16")
  assert float32[-1] < float32[0]  # it trains
  assert not np.array_equal(float32, bfloat16)  # bfloat16 really ran
  np.testing.assert_allclose(bfloat16, float32, rtol=BF16_LOSS_RTOL)


def test_the_benchmark_reports_the_compiled_memory_of_the_configured_step(tiny_corpus, cache_dir):
  from jaxlm.tools import benchmark
  config = smoke_config(tiny_corpus, cache_dir, **{"train.microbatches": 2, "model.remat": "full"})
  result = benchmark.benchmark(config, memory_only=True)
  assert result["microbatches"] == 2 and result["remat"] == "full"
  assert result["compiled_peak_bytes"] >= result["compiled_temp_bytes"] > 0
  assert "step_seconds" not in result  # nothing ran
