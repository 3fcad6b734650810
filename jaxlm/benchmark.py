"""Training throughput and model FLOPs utilisation of a config, on the devices present.

Steady state only: the first steps (compilation, warm-up) are excluded. FLOPs
per step come from XLA's cost analysis of the compiled train step (forward,
backward and optimiser, as the device runs them), so the count is the same for
every model family without a hand-written formula. Utilisation is reported
against the matrix-multiply FLOP/s that the same process measures on the same
device and dtype, and, on known GPUs, against the vendor's quoted dense peak.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlm import train
from jaxlm.data import lm_batches

# Dense (no sparsity) peaks quoted by NVIDIA for SXM parts, FLOP/s.
QUOTED_PEAKS = {
    "H100": {"float32": 67e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
    "H200": {"float32": 67e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
}


def matmul_flops_per_second(dtype=jnp.float32, size: int = 2048, repeats: int = 10) -> float:
  """Measured FLOP/s of a square matrix product on the first device."""
  keys = jax.random.split(jax.random.key(0))
  left = jax.random.normal(keys[0], (size, size), dtype)
  right = jax.random.normal(keys[1], (size, size), dtype)
  product = jax.jit(lambda a, b: a @ b)
  product(left, right).block_until_ready()
  started = time.perf_counter()
  for _ in range(repeats):
    result = product(left, right)
  result.block_until_ready()
  return 2 * size ** 3 * repeats / (time.perf_counter() - started)


def _flops_of(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0)) if analysis else 0.0


def benchmark(config, *, warmup_steps: int = 3, timed_steps: int = 20) -> dict:
  experiment = train.build_experiment(config)
  model, mesh = experiment.model, experiment.mesh
  state = train.init_state(model, experiment.optimizer, config, mesh)
  step_fn = train.make_train_step(model, experiment.loss_fn, experiment.optimizer, mesh, state, config.seed)
  batcher = lm_batches.get_batcher(config.data.batching)
  tokens = experiment.corpus.splits["train"]

  def batch(step):
    local = batcher(tokens, step, seed=config.seed, batch_size=config.train.batch_size,
                    length=config.train.seq_len, process_index=jax.process_index(),
                    process_count=jax.process_count())
    return train.global_batch(mesh, local)

  compiled = step_fn.lower(state, batch(0)).compile()
  flops_per_step = _flops_of(compiled) * jax.device_count()  # cost analysis is per device
  batches = [batch(step) for step in range(warmup_steps + timed_steps)]  # data prep is not timed
  for step in range(warmup_steps):
    state, step_metrics = step_fn(state, batches[step])
  jax.block_until_ready(step_metrics)
  started = time.perf_counter()
  for step in range(warmup_steps, warmup_steps + timed_steps):
    state, step_metrics = step_fn(state, batches[step])
    if jax.default_backend() == "cpu":  # see train.InFlight
      jax.block_until_ready(step_metrics)
  jax.block_until_ready(step_metrics)
  seconds_per_step = (time.perf_counter() - started) / timed_steps
  tokens_per_step = config.train.batch_size * config.train.seq_len
  compute_dtype = jnp.bfloat16 if config.model.compute_dtype == "bfloat16" else jnp.float32
  matmul = matmul_flops_per_second(compute_dtype)
  achieved = flops_per_step / seconds_per_step
  device = jax.devices()[0]
  result = {
      "device": f"{jax.device_count()} x {device.device_kind}",
      "backend": jax.default_backend(),
      "parameters": int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state.params))),
      "tokens_per_step": tokens_per_step,
      "step_seconds": seconds_per_step,
      "tokens_per_second": tokens_per_step / seconds_per_step,
      "flops_per_token": flops_per_step / tokens_per_step,
      "achieved_flops_per_second": achieved,
      "matmul_flops_per_second": matmul * jax.device_count(),
      "mfu_vs_measured_matmul": achieved / (matmul * jax.device_count()),
  }
  for name, peaks in QUOTED_PEAKS.items():
    if name in device.device_kind:
      peak = peaks["bfloat16" if compute_dtype == jnp.bfloat16 else "float32"]
      result["mfu_vs_quoted_peak"] = achieved / (peak * jax.device_count())
      result["quoted_peak_flops_per_second"] = peak * jax.device_count()
  return result
