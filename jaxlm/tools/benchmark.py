"""Training throughput and model FLOPs utilisation of a config, on the devices present.

Steady state only: the first steps (compilation, warm-up) are excluded. FLOPs
per step are the matrix products of the forward and backward pass, counted from
the program's jaxpr (jaxlm.tools.flops), so the count is the same for every model
family and backend without a hand-written formula. Utilisation is reported
against the matrix-multiply FLOP/s that the same process measures on the same
device and dtype, and, on known GPUs, against the vendor's quoted dense peak.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlm import errors
from jaxlm.tools import flops, step_profile
from jaxlm.training import experiments, optim, sparse_rows, steps
from jaxlm.tasks import causal_lm

# Dense (no sparsity) tensor-core peaks quoted by NVIDIA for SXM parts, FLOP/s.
# float32 matrix products run on TF32 tensor cores under JAX's default precision
# on these GPUs, so TF32 is the float32 peak.
QUOTED_PEAKS = {
    "H100": {"float32": 494.7e12, "bfloat16": 989.4e12},
    "H200": {"float32": 494.7e12, "bfloat16": 989.4e12},
}


def _best_seconds(function, *args, repeats: int = 8, trials: int = 3) -> float:
  """Best of `trials` mean times of `repeats` calls (after one untimed call that compiles)."""
  jax.block_until_ready(function(*args))
  best = float("inf")
  for _ in range(trials):
    started = time.perf_counter()
    for _ in range(repeats):
      result = function(*args)
    jax.block_until_ready(result)
    best = min(best, (time.perf_counter() - started) / repeats)
  return best


def matmul_flops_per_second(dtype=jnp.float32, size: int = 2048, repeats: int = 10, trials: int = 3) -> float:
  """Measured FLOP/s of a square matrix product on the first device: the best of
  `trials` timings of `repeats` products, since one timing on a shared CPU is noisy."""
  keys = jax.random.split(jax.random.key(0))
  left = jax.random.normal(keys[0], (size, size), dtype)
  right = jax.random.normal(keys[1], (size, size), dtype)
  seconds = _best_seconds(jax.jit(lambda a, b: a @ b), left, right, repeats=repeats, trials=trials)
  return 2 * size ** 3 / seconds


def count_parameters(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def time_steps(step_fn, state, batches: list, warmup_steps: int, trials: int = 1, after_group=None):
  """Runs every batch; returns (state, last metrics, [seconds per step of each group],
  [after_group() of each group], [process CPU seconds per step of each group]).

  The steps after warm-up are timed in `trials` consecutive groups. `after_group`, if given,
  runs untimed after each group (benchmark() measures the matmul rate there, so that each
  group's utilisation compares the step with the device's rate at that moment). The warm-up
  also runs one step of each shape the timed batches have (a trimmed batch's length, a lazy
  step's row count: steps.TrainStep compiles one program for each), so no compile is timed.
  """
  warm = list(batches[:warmup_steps])
  if hasattr(step_fn, "arguments"):  # a steps.TrainStep: its programs are per argument signature
    seen = {steps.signature(step_fn.arguments(state, batch)) for batch in warm}
    for batch in batches[warmup_steps:]:
      signature = steps.signature(step_fn.arguments(state, batch))
      if signature not in seen:
        seen.add(signature)
        warm.append(batch)
  for batch in warm:
    state, step_metrics = step_fn(state, batch)
  jax.block_until_ready(step_metrics)
  timed = batches[warmup_steps:]
  trials = max(1, min(trials, len(timed)))
  bounds = np.linspace(0, len(timed), trials + 1).astype(int)  # every timed step in some group
  seconds, extras, cpu_seconds = [], [], []
  for start, end in zip(bounds[:-1], bounds[1:]):
    group = timed[start:end]
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch in group:
      state, step_metrics = step_fn(state, batch)
      if jax.default_backend() == "cpu":  # see jaxlm.training.evaluation.InFlight
        jax.block_until_ready(step_metrics)
    jax.block_until_ready(step_metrics)
    seconds.append((time.perf_counter() - started) / len(group))
    cpu_seconds.append((time.process_time() - cpu_started) / len(group))  # every thread of the process
    if after_group is not None:
      extras.append(after_group())
  return state, step_metrics, seconds, extras, cpu_seconds


def validation_cost(experiment, state) -> dict:
  """Wall and process CPU seconds of one validation as the loop runs it (the "valid" split,
  train.eval_batch_size and eval_tokens), after an untimed one that compiles."""
  from jaxlm.training import evaluation
  config = experiment.config.train
  evaluate_split = evaluation.make_evaluator(experiment)
  validate = lambda: evaluate_split(state, "valid", batch_size=config.eval_batch_size, limit=config.eval_tokens)
  validate()
  wall, cpu = time.perf_counter(), time.process_time()
  validate()
  return {"validation_seconds": time.perf_counter() - wall, "validation_cpu_seconds": time.process_time() - cpu}


def train_step_flops(experiment, state, local_batch: dict) -> float:
  """Model FLOPs of one step over the global batch: forward and backward matmuls (jaxlm.tools.flops)."""
  model, loss_fn = experiment.model, experiment.task.loss

  def objective(params):
    outputs, _ = experiments.apply_model(model, {"params": params, **state.frozen}, local_batch, train=True,
                                   carry=state.carry, rngs={"dropout": jax.random.key(0)})
    return loss_fn(outputs, local_batch)["loss_sum"]

  return flops.function_flops(jax.grad(objective), state.params) * jax.process_count()


def step_breakdown(experiment, state, local_batch: dict) -> dict:
  """Seconds of the step's pieces: forward + loss, forward + backward, the optimiser update.

  Each is jitted on its own and run un-sharded on the default device with the whole local
  batch, so on one device they add up to the train step minus its bookkeeping (gradient
  averaging and the logged norms); on several devices they are the work of all of them.
  """
  model, loss_fn, optimizer = experiment.model, experiment.task.loss, experiment.optimizer
  params = jax.device_get(state.params)
  carry = jax.device_get(state.carry)
  batch = {key: jnp.asarray(value) for key, value in local_batch.items() if key != "reset"}
  frozen, differentiated, touched = state.frozen, params, {}
  if optim.lazy_embeddings(experiment.config.optim):  # the step's view of the rows the batch reads
    arrays = sparse_rows.RowReader(model, state.frozen).view_arrays(local_batch["inputs"])
    view = sparse_rows.step_view(model, params, state.frozen, batch["inputs"], arrays)
    model, differentiated, frozen = view.model, view.params, view.frozen
    batch, touched = {**batch, "inputs": view.token_ids}, {"touched_rows": view.rows}

  def loss(params):
    outputs, _ = experiments.apply_model(model, {"params": params, **frozen}, batch, train=True, carry=carry,
                                   rngs={"dropout": jax.random.key(0)})
    sums = loss_fn(outputs, batch)
    return sums["loss_sum"] / sums["count"]

  def update(grads, opt_state, params):
    updates, opt_state = optimizer.update(grads, opt_state, params, **touched)
    if touched:
      return sparse_rows.apply_updates(params, updates, touched["touched_rows"]), opt_state
    return jax.tree.map(jnp.add, params, updates), opt_state

  gradient = jax.jit(jax.grad(loss))
  grads = gradient(differentiated)
  return {
      "forward_seconds": _best_seconds(jax.jit(loss), differentiated),
      "forward_backward_seconds": _best_seconds(gradient, differentiated),
      "optimizer_update_seconds": _best_seconds(jax.jit(update), grads, optimizer.init(params), params),
  }


def benchmark(config, *, warmup_steps: int = 3, timed_steps: int = 30, trials: int = 5,
              breakdown: bool = False, memory_only: bool = False, profile: bool = False) -> dict:
  """Steady-state step time, FLOPs and MFU: medians over `trials` groups of the timed steps.

  Also the compiled step's memory from XLA (_memory_analysis: compiled_peak_bytes etc.) and
  its compile time. The step is the trainer's, with train.microbatches and model.remat as
  configured. memory_only: compile and report memory (and the compile time), run nothing.
  profile: then run the timed batches again under jax's profiler (jaxlm.tools.step_profile: the
  step's time by part and its costliest instructions); only batches of the compiled program's
  shapes, so that every event names one of its instructions.
  """
  experiment = experiments.build_experiment(config)
  model, mesh = experiment.model, experiment.mesh
  state = experiments.init_experiment_state(experiment)
  step_fn = steps.make_train_step(model, experiment.task.loss, experiment.optimizer, mesh, state, config.seed,
                                  microbatches=config.train.microbatches,
                                  sparse_embeddings=optim.lazy_embeddings(config.optim))

  def local_batch(step):
    return experiment.task.train_batch(step, seed=config.seed, batch_size=config.train.batch_size,
                                       process_index=jax.process_index(), process_count=jax.process_count())

  batch = lambda step: experiments.global_batch(mesh, local_batch(step))
  started = time.perf_counter()
  compiled = step_fn.lower(state, batch(0)).compile()
  device = jax.devices()[0]
  setting = {
      "device": f"{jax.device_count()} x {device.device_kind}",
      "backend": jax.default_backend(),
      "parameters": count_parameters(state.params),
      "tokens_per_step": local_batch(0)["inputs"].size * jax.process_count(),  # input positions, padding included
      "microbatches": config.train.microbatches,
      "remat": config.model.remat,
      "compile_seconds": time.perf_counter() - started,
      **_memory_analysis(compiled),
  }
  if memory_only:
    return setting
  # Model FLOPs: the forward and backward pass once, without remat's recomputation, so that
  # the utilisation of a rematerialised step shows what the recomputation costs.
  model_flops_experiment = dataclasses.replace(experiment, model=model.clone(body=model.body.clone(remat="none")))
  flops_per_step = train_step_flops(model_flops_experiment, state, local_batch(0))
  batches = [batch(step) for step in range(warmup_steps + timed_steps)]  # data prep is not timed
  compute_dtype = jnp.bfloat16 if config.model.compute_dtype == "bfloat16" else jnp.float32
  # A shared CPU's speed drifts by +-10% within minutes, so the matmul rate is measured
  # after each group of steps and each group's utilisation uses the rate next to it; the
  # reported figures are medians over the groups, as are the process's CPU-seconds a step.
  state, step_metrics, group_seconds, group_matmul, group_cpu = time_steps(
      compiled, state, batches, warmup_steps, trials,
      after_group=lambda: matmul_flops_per_second(compute_dtype, trials=1))
  seconds_per_step = float(np.median(group_seconds))
  matmul = float(np.median(group_matmul))
  utilisation = float(np.median([flops_per_step / seconds / (rate * jax.device_count())
                                 for seconds, rate in zip(group_seconds, group_matmul)]))
  tokens_per_step = setting["tokens_per_step"]
  achieved = flops_per_step / seconds_per_step
  result = {
      **setting,
      "step_seconds": seconds_per_step,
      "step_seconds_per_group": group_seconds,
      "tokens_per_second": tokens_per_step / seconds_per_step,
      "flops_per_token": flops_per_step / tokens_per_step,
      "achieved_flops_per_second": achieved,
      "matmul_flops_per_second": matmul * jax.device_count(),
      "matmul_flops_per_second_per_group": [rate * jax.device_count() for rate in group_matmul],
      "mfu_vs_measured_matmul": utilisation,
      # Rows of the batch: sentences of a fine-tuning task, windows of a language model.
      "examples_per_second": config.train.batch_size / seconds_per_step,
      "cpu_seconds_per_example": float(np.median(group_cpu)) / config.train.batch_size,
      # Input positions, padding included, of the timed batches (a trimmed batch's own length).
      "mean_tokens_per_step": float(np.mean([batch["inputs"].size for batch in batches[warmup_steps:]])),
  }
  for name, peaks in QUOTED_PEAKS.items():
    if name in device.device_kind:
      peak = peaks["bfloat16" if compute_dtype == jnp.bfloat16 else "float32"]
      result["mfu_vs_quoted_peak"] = achieved / (peak * jax.device_count())
      result["quoted_peak_flops_per_second"] = peak * jax.device_count()
  if profile:
    profiled = [batch for batch in batches[warmup_steps:]
                if steps.signature(compiled.arguments(state, batch)) == compiled.signature]
    result["profile_steps"] = len(profiled)  # 0: every timed batch had another shape; nothing profiled
    if profiled:
      state, profiled_result = step_profile.profile_steps(compiled, state, profiled, compiled.as_text())
      result.update(profiled_result)
  if breakdown:
    result.update(validation_cost(experiment, state))
    result.update(cell_shares(config, result))
    result.update(step_breakdown(experiment, state, local_batch(0)))
    result["optimizer_share_of_step"] = result["optimizer_update_seconds"] / (
        result["optimizer_update_seconds"] + result["forward_backward_seconds"])
  return result


def cell_shares(config, result: dict) -> dict:
  """What a run of `config` would spend, from the measured pieces: train.steps steps, a validation
  every train.eval_every steps and at the end, and one compile of the step; each piece's share.
  The start (imports, task building, the initial state) and checkpoints are not counted."""
  validations = (config.train.steps // config.train.eval_every if config.train.eval_every else 0) + (
      0 if config.train.eval_every and config.train.steps % config.train.eval_every == 0 else 1)
  pieces = {"steps": config.train.steps * result["step_seconds"],
            "validation": validations * result["validation_seconds"],
            "compile": result["compile_seconds"]}
  total = sum(pieces.values())
  return {"run_estimate_seconds": total, "run_validations": validations,
          **{f"{name}_share_of_run": seconds / total for name, seconds in pieces.items()}}


# ----------------------------------------------------------------------------
# Output-layer cost: softmax vs embedding heads at large vocabularies.

HEAD_COST_HEADS = ("softmax", "cosine", "vmf")
HEAD_COST_VOCABULARIES = (33_278, 100_000, 250_000)  # WikiText-2, a mid-size and a Russian-size vocabulary


def head_cost_config(base_config, head: str, *, width: int = 300, tokens_per_step: int = 8192,
                     seq_len: int = 128, num_layers: int = 2, tie_embeddings: bool = True):
  """`base_config` (configs.common.base_config()) set to the head-cost setting for one head:
  a `num_layers`-layer transformer of `width`, `tokens_per_step` tokens in rows of `seq_len`."""
  if tokens_per_step % seq_len:
    raise errors.ConfigError(f"tokens_per_step={tokens_per_step} is not a multiple of seq_len={seq_len}")
  config = base_config.copy_and_resolve_references()
  config.model.head = head
  config.model.width = width
  config.model.target_dim = width
  config.model.tie_embeddings = tie_embeddings
  config.model.family = "transformer"
  config.model.transformer.update(num_layers=num_layers, num_heads=4, dropout=0.0, max_length=seq_len)
  config.train.seq_len = seq_len
  config.train.batch_size = tokens_per_step // seq_len
  return config


def _memory_analysis(compiled) -> dict:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return {}
  sizes = {name: int(getattr(analysis, f"{name}_size_in_bytes")) for name in ("argument", "output", "alias", "temp")}
  # The state is donated, so its outputs reuse the argument buffers (alias): without
  # subtracting them the state would be counted twice.
  sizes["peak"] = sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
  return {f"compiled_{name}_bytes": value for name, value in sizes.items()}


def head_cost(config, vocab_size: int, *, warmup_steps: int = 2, timed_steps: int = 5) -> dict:
  """Train-step time and memory of `config` (see head_cost_config) at `vocab_size` words.

  Synthetic uniform token ids and, for embedding heads, a random fixed target table: the
  cost does not depend on the words. The step is the trainer's own (steps.make_train_step).
  Memory: the compiled step's buffer sizes from XLA (on every backend), and on GPU the
  device's peak bytes in use, which never resets in a process, so give each setting its
  own process (launch/benchmark_heads.py does).
  """
  from jaxlm.training import optim
  from jaxlm.starts import target_vectors
  from jaxlm.models import build_model

  model = build_model(config.model, vocab_size)
  optimizer = optim.build_optimizer(config.optim, warmup_steps + timed_steps)
  mesh = experiments.make_mesh()
  state = experiments.init_state(model, optimizer, config, mesh)
  if target_vectors.has_target_table(state):
    rng = np.random.default_rng(config.seed)
    state = target_vectors.install(state, rng.standard_normal((vocab_size, config.model.target_dim), np.float32))
  step_fn = steps.make_train_step(model, causal_lm.batch_loss(config.model), optimizer, mesh, state, config.seed)

  rows, length = config.train.batch_size, config.train.seq_len
  def batch(step):
    window = np.random.default_rng([config.seed, step]).integers(0, vocab_size, (rows, length + 1), dtype=np.int32)
    return experiments.global_batch(mesh, {"inputs": window[:, :-1], "targets": window[:, 1:],
                                     "weights": np.ones((rows, length), np.float32),
                                     "reset": np.ones((rows,), bool)})

  started = time.perf_counter()
  compiled = step_fn.lower(state, batch(0)).compile()
  compile_seconds = time.perf_counter() - started
  batches = [batch(step) for step in range(warmup_steps + timed_steps)]  # data prep is not timed
  state, step_metrics, (seconds_per_step,), _, _ = time_steps(compiled, state, batches, warmup_steps)
  loss = float(step_metrics["loss_sum"] / step_metrics["count"])
  if not np.isfinite(loss):
    raise FloatingPointError(f"head_cost: {config.model.head} at {vocab_size} words gave loss {loss}")

  device = jax.devices()[0]
  head_params = state.params["head"]
  result = {
      "head": config.model.head,
      "vocab_size": vocab_size,
      "tie_embeddings": bool(config.model.tie_embeddings),
      "device": f"{jax.device_count()} x {device.device_kind}",
      "backend": jax.default_backend(),
      "tokens_per_step": rows * length,
      "parameters": count_parameters(state.params),
      "head_parameters": count_parameters(head_params),
      "step_seconds": seconds_per_step,
      "tokens_per_second": rows * length / seconds_per_step,
      "compile_seconds": compile_seconds,
      "loss": loss,
      **_memory_analysis(compiled),
  }
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    result["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
  return result


def head_cost_markdown_header() -> str:
  return ("| head | vocabulary | step ms | tokens/s | compiled peak GiB | temp GiB | device peak GiB | head params |\n"
          "|---|---|---|---|---|---|---|---|")


def head_cost_markdown_row(result: dict) -> str:
  def gib(key):
    return f"{result[key] / 2**30:.2f}" if key in result else "-"
  if "error" in result:
    return f"| {result['head']} | {result['vocab_size']:,} | failed: {result['error']} | | | | | |"
  return (f"| {result['head']} | {result['vocab_size']:,} | {1000 * result['step_seconds']:.1f} | "
          f"{result['tokens_per_second']:,.0f} | {gib('compiled_peak_bytes')} | {gib('compiled_temp_bytes')} | "
          f"{gib('device_peak_bytes')} | {result['head_parameters']:,} |")
