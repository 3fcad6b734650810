"""launch/benchmark.py's library function on the smoke config (what it reports, not how fast)."""

import pytest

from conftest import smoke_config
from jaxlm.tools import benchmark


def test_benchmark_reports_throughput_flops_and_utilisation(tiny_corpus, cache_dir):
  config = smoke_config(tiny_corpus, cache_dir, **{"model.head": "softmax"})
  result = benchmark.benchmark(config, warmup_steps=1, timed_steps=2, trials=2)
  tokens = config.train.batch_size * config.train.seq_len
  # Each group of timed steps has its own matmul-rate measurement beside it.
  assert len(result["step_seconds_per_group"]) == len(result["matmul_flops_per_second_per_group"]) == 2
  assert result["tokens_per_step"] == tokens
  assert result["tokens_per_second"] > 0 and result["matmul_flops_per_second"] > 0
  # The tied output layer alone is 6 x width x vocab FLOPs per token (forward and backward).
  assert result["flops_per_token"] >= 6 * config.model.width * 60
  assert 0 < result["mfu_vs_measured_matmul"]


def test_the_breakdown_times_each_piece_of_the_step(tiny_corpus, cache_dir):
  result = benchmark.benchmark(smoke_config(tiny_corpus, cache_dir), warmup_steps=1, timed_steps=1, breakdown=True)
  pieces = ("forward_seconds", "forward_backward_seconds", "optimizer_update_seconds")
  assert all(result[piece] > 0 for piece in pieces)
  assert result["forward_seconds"] < result["forward_backward_seconds"]  # the backward pass is not free


def test_a_fine_tuning_config_reports_examples_cpu_per_example_and_the_run_shares(tmp_path):
  from task_fixtures import finetune_config, write_classification
  config = finetune_config("task=rucola,body=fasttext", write_classification(str(tmp_path)),
                           **{"optim.embedding_updates": "lazy"})
  result = benchmark.benchmark(config, warmup_steps=1, timed_steps=2, trials=1, breakdown=True)
  # Examples per second is the batch over the mean step: equal up to the float division's rounding.
  assert result["examples_per_second"] * result["step_seconds"] == pytest.approx(config.train.batch_size)
  assert 0 < result["cpu_seconds_per_example"] and result["validation_seconds"] > 0
  # Trimmed batches: the timed steps' positions are a mean of multiples of the cut, at most max_length.
  assert 0 < result["mean_tokens_per_step"] <= config.train.batch_size * config.task.max_length
  shares = [result[f"{piece}_share_of_run"] for piece in ("steps", "validation", "compile")]
  assert abs(sum(shares) - 1.0) < 1e-9 and all(0 < share < 1 for share in shares)
  assert result["run_validations"] == config.train.steps // config.train.eval_every
  assert 0 < result["optimizer_share_of_step"] < 1


def test_instruction_parts_label_each_instruction_by_its_metadata_and_leave_containers_out():
  from jaxlm.tools import step_profile
  text = "\n".join([
      'ENTRY %main {',
      '  %fusion.1 = f32[4,8]{1,0} fusion(%p), kind=kLoop, metadata={op_name="jit(step)/jvp(Model)/body/dot"}',
      '  %fusion.2 = f32[8]{0} fusion(%q), kind=kLoop, metadata={op_name="jit(step)/transpose(jvp(Model))/dot"}',
      '  %scatter.3 = f32[9,8]{1,0} scatter(%t, %i, %u), metadata={op_name="jit(step)/scatter"}',
      '  %copy.4 = f32[9,8]{1,0} copy(%t)',
      '  %while.5 = (s32[], f32[8]{0}) while(%tuple), condition=%cond, body=%body, metadata={op_name="jit(step)/while"}',
      '  ROOT %tuple.6 = (f32[9,8]{1,0}) tuple(%scatter.3), metadata={op_name="jit(step)/add"}',
      '}'])
  parts = step_profile.instruction_parts(text)
  assert {name: part for name, (part, _) in parts.items()} == {
      "fusion.1": "forward", "fusion.2": "backward", "scatter.3": "outside", "copy.4": "unlabelled",
      "tuple.6": "outside"}
  assert parts["fusion.1"][1] == "jit(step)/jvp(Model)/body/dot"


def test_the_profile_gives_the_compiled_step_time_by_part_and_its_costliest_instructions(tiny_corpus, cache_dir):
  from jaxlm.tools import step_profile
  result = benchmark.benchmark(smoke_config(tiny_corpus, cache_dir), warmup_steps=1, timed_steps=2, trials=1,
                               profile=True)
  assert result["profile_steps"] == 2 and result["profile_step_seconds"] > 0
  by_part = result["profile_seconds_by_part"]
  assert set(by_part) == set(step_profile.PARTS)
  # A train step runs a forward pass, its transpose and an optimiser update outside the gradient.
  assert all(by_part[part] > 0 for part in ("forward", "backward", "outside"))
  top = result["profile_top_instructions"]
  assert top and all(name and seconds > 0 and part in step_profile.PARTS for name, seconds, part, _ in top)
  assert [seconds for _, seconds, _, _ in top] == sorted((seconds for _, seconds, _, _ in top), reverse=True)
