"""The masked-LM task (jaxlm.tasks.masked_lm): BERT's masking, its determinism, evaluation
coverage, the <mask> id, the encoder requirement, and a smoke run that learns."""

import json

import jax
import numpy as np
import pytest

from conftest import override
from jaxlm.tasks import masked_lm

ROWS, LENGTH, VOCAB = 4000, 64, 1000  # statistics: 640,000 tokens, 40,000 chosen per row count


def _config(corpus_dir, cache, arg="smoke", **overrides):
  from configs import wt2_mlm
  config = wt2_mlm.get_config(arg)
  config.data.path, config.data.cache_dir, config.train.eval_tokens = corpus_dir, cache, 0
  return override(config, **overrides)


@pytest.fixture(scope="module")
def task(tiny_corpus, cache_dir):
  return masked_lm.MaskedLM(_config(tiny_corpus, cache_dir))


def _mask(tokens, real, seed=0, **fractions):
  options = dict(rate=0.15, mask_fraction=0.8, random_fraction=0.1, mask_id=VOCAB)
  options.update(fractions)
  return masked_lm.mask_tokens(tokens, real, np.random.default_rng(seed), **options)


def test_masking_statistics_follow_bert():
  tokens = np.random.default_rng(1).integers(0, VOCAB, size=(ROWS, LENGTH))
  inputs, chosen = _mask(tokens, np.ones_like(tokens, bool))
  np.testing.assert_array_equal(chosen.sum(axis=1), round(0.15 * LENGTH))  # exactly, in every row
  np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])  # nothing else changes
  masked = chosen & (inputs == VOCAB)
  replaced = chosen & (inputs != VOCAB) & (inputs != tokens)
  kept = chosen & (inputs == tokens)
  total = chosen.sum()
  assert abs(masked.sum() / total - 0.8) < 0.01
  # A random word equals the original with probability 1/VOCAB: it then counts as kept.
  assert abs(replaced.sum() / total - 0.1 * (1 - 1 / VOCAB)) < 0.01
  assert abs(kept.sum() / total - 0.1) < 0.01
  # Every position is as likely to be chosen as any other.
  per_position = chosen.mean(axis=0)
  assert np.all(np.abs(per_position - 0.15) < 0.03)


def test_random_replacements_are_never_the_mask_and_short_rows_get_one_choice():
  tokens = np.random.default_rng(2).integers(0, VOCAB, size=(500, LENGTH))
  real = np.arange(LENGTH)[None, :] < np.random.default_rng(3).integers(1, LENGTH + 1, size=(500, 1))
  inputs, chosen = _mask(tokens, real, mask_fraction=0.0, random_fraction=1.0)
  assert inputs.max() < VOCAB and chosen.sum() > 0
  assert not np.any(chosen & ~real)  # padding is never chosen
  expected = np.maximum(np.rint(0.15 * real.sum(axis=1)), 1)
  np.testing.assert_array_equal(chosen.sum(axis=1), expected)


def test_mask_is_the_last_word_and_corpus_ids_are_unchanged(task, tiny_corpus, cache_dir):
  from jaxlm.data import corpora
  corpus_words = corpora.load_corpus(_config(tiny_corpus, cache_dir).data).vocabulary.words
  assert task.words == list(corpus_words) + [masked_lm.MASK_TOKEN]
  assert task.mask_id == len(corpus_words) == len(task.words) - 1


def test_training_batches_are_masked_windows_of_the_train_split(task):
  train = task.corpus.splits["train"]
  windows = np.lib.stride_tricks.sliding_window_view(train, task.length)  # [positions, length]
  chosen_fractions = []
  for step in range(20):
    batch = task.train_batch(step, seed=0, batch_size=8)
    assert set(batch) == {"inputs", "targets", "weights"}
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    for row in batch["targets"]:  # the targets are an uncorrupted window of the train split
      assert np.any(np.all(windows == row, axis=1))
    chosen = batch["weights"] == 1
    np.testing.assert_array_equal(batch["weights"].sum(axis=1), round(0.15 * task.length))
    np.testing.assert_array_equal(batch["inputs"][~chosen], batch["targets"][~chosen])
    chosen_fractions.append((batch["inputs"][chosen] == task.mask_id).mean())
  assert 0.6 < np.mean(chosen_fractions) < 0.95


def test_training_batches_are_a_pure_function_of_seed_and_step(task):
  first, again = task.train_batch(5, seed=0, batch_size=8), task.train_batch(5, seed=0, batch_size=8)
  for key in first:
    np.testing.assert_array_equal(first[key], again[key])
  assert not np.array_equal(first["inputs"], task.train_batch(6, seed=0, batch_size=8)["inputs"])
  assert not np.array_equal(first["inputs"], task.train_batch(5, seed=1, batch_size=8)["inputs"])
  # Two hosts each build their half of the same global batch.
  halves = [task.train_batch(5, seed=0, batch_size=8, process_index=index, process_count=2) for index in (0, 1)]
  for key in first:
    np.testing.assert_array_equal(np.concatenate([half[key] for half in halves]), first[key])


def _real_tokens(batches):
  return np.concatenate([batch["targets"][batch["mask"]] for batch in batches])


@pytest.mark.parametrize("limit", [0, 100])
def test_evaluation_covers_the_split_once_with_a_fixed_masking(task, limit):
  valid = task.corpus.splits["valid"]
  expected = valid[:limit] if limit else valid
  batches = list(task.eval_batches("valid", batch_size=4, limit=limit))
  np.testing.assert_array_equal(_real_tokens(batches), expected)  # every token once, in order
  windows = -(-expected.size // task.length)
  assert len(batches) == -(-windows // 4)
  lengths = [task.length] * (expected.size // task.length) + ([expected.size % task.length] if expected.size %
                                                                task.length else [])
  total_weight = sum(batch["weights"].sum() for batch in batches)
  assert total_weight == sum(max(1, round(0.15 * length)) for length in lengths)
  for batch in batches:
    assert not np.any((batch["weights"] > 0) & ~batch["mask"])  # padding is never scored
    assert set(batch) == {"inputs", "targets", "weights", "mask"}
  # The same masking at every evaluation, whatever the batch size (it depends on the window alone).
  other = list(task.eval_batches("valid", batch_size=3, limit=limit))
  stack = lambda batches, key: np.concatenate([batch[key] for batch in batches])[:windows]
  for key in ("inputs", "targets", "weights", "mask"):
    np.testing.assert_array_equal(stack(batches, key), stack(other, key))
  with pytest.raises(ValueError, match="split"):
    next(task.eval_batches("dev", batch_size=4))


def test_a_causal_body_is_refused(task, tiny_corpus, cache_dir):
  causal = _config(tiny_corpus, cache_dir, **{"model.transformer.causal": True})
  with pytest.raises(ValueError, match=r"model\.transformer\.causal"):
    task.build_model(causal.model)


def test_bad_masking_fractions_are_refused(tiny_corpus, cache_dir):
  with pytest.raises(ValueError, match="mask_token_fraction"):
    masked_lm.MaskedLM(_config(tiny_corpus, cache_dir, **{"task.random_token_fraction": 0.5}))


@pytest.mark.parametrize("body", ["transformer", "lstm", "tcn"])
def test_every_encoder_body_scores_a_padded_evaluation_batch_without_seeing_the_padding(body, tiny_corpus,
                                                                                          cache_dir):
  config = _config(tiny_corpus, cache_dir, f"body={body},head=softmax,smoke")
  body_task = masked_lm.MaskedLM(config)
  model = body_task.build_model(config.model)
  batch = list(body_task.eval_batches("valid", batch_size=8))[-1]  # padding rows and a padded window
  assert not batch["mask"].all()
  variables = model.init(jax.random.key(0), body_task.init_inputs(), train=False)
  outputs, _ = model.apply(variables, batch["inputs"], train=False, mask=batch["mask"])
  assert outputs.shape == batch["inputs"].shape + (len(body_task.words),)
  summary = body_task.summarise(jax.device_get(body_task.eval_sums(outputs, batch)))
  assert np.isfinite(summary["loss"]) and summary["tokens"] == batch["weights"].sum()
  # The mask reaches the body: other padding tokens change no real token's output.
  repadded = np.where(batch["mask"], batch["inputs"], body_task.mask_id)
  other, _ = model.apply(variables, repadded, train=False, mask=batch["mask"])
  np.testing.assert_allclose(np.asarray(other)[batch["mask"]], np.asarray(outputs)[batch["mask"]], atol=1e-5)


def test_smoke_training_lowers_the_masked_loss(tiny_corpus, cache_dir, tmp_path):
  from jaxlm import checkpoint
  from jaxlm.training import loop
  # 32 x 16 tokens a step: 64 masked targets, enough for a loss curve that is not all noise.
  config = _config(tiny_corpus, cache_dir, **{"train.steps": 40, "train.eval_every": 20, "train.log_every": 4,
                                                "train.batch_size": 32, "optim.lr": 1e-2})
  summary = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  train_losses = [record["loss"] for record in records if record["kind"] == "train"]
  valid = [record for record in records if record["kind"] == "valid"]
  # An untrained tied softmax is near uniform: loss ln(vocabulary) = ln(61) = 4.11. (The
  # valid split holds only ~40 masked tokens: a noisy, so looser, check.)
  uniform = np.log(len(checkpoint.load_words(str(tmp_path))))
  assert np.mean(train_losses[-3:]) < min(train_losses[0], uniform - 1.0)
  assert valid[-1]["loss"] < uniform - 0.3
  assert {"loss", "perplexity", "accuracy", "accuracy_top5", "tokens"} <= set(summary)
  assert checkpoint.load_words(str(tmp_path))[-1] == masked_lm.MASK_TOKEN


def test_the_benchmark_reports_the_masked_lm_steps_time_and_compiled_memory(tiny_corpus, cache_dir):
  # BENCHMARKS.md's masked-LM cost-by-head table reads tokens/s and the compiled step's
  # memory (jaxlm.tools.benchmark._memory_analysis) from this one result.
  from jaxlm.tools import benchmark
  config = _config(tiny_corpus, cache_dir, **{"model.head": "softmax"})
  result = benchmark.benchmark(config, warmup_steps=1, timed_steps=1, trials=1)
  assert result["tokens_per_second"] > 0
  assert result["compiled_peak_bytes"] >= result["compiled_temp_bytes"] > 0
  assert result["compiled_argument_bytes"] > 0 and result["compiled_output_bytes"] > 0
