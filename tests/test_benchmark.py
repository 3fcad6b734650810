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
