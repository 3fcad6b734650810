"""Every output head trains through the one trainer; evaluation reports top-1 and top-5 for each."""

import json

import jax
import numpy as np
import pytest

from conftest import smoke_config
from jaxlm.starts import target_vectors
from jaxlm.training import experiments, loop, steps
from jaxlm.data import corpora, fasttext_vectors, lm_batches
from jaxlm.models import build_model

DIM = 8
HEADS = ("softmax", "adaptive", "cosine", "l2", "vmf")
NOT_IN_FASTTEXT = ("w59", "<eos>")  # words of the tiny corpus the .vec leaves out


@pytest.fixture(scope="module")
def vec_path(tiny_corpus, tmp_path_factory):
  """A text .vec with a random DIM-d vector for every tiny-corpus word but NOT_IN_FASTTEXT."""
  words = [f"w{index}" for index in range(60) if f"w{index}" not in NOT_IN_FASTTEXT] + ["unused"]
  rows = np.random.default_rng(1).standard_normal((len(words), DIM)).astype(np.float32)
  path = tmp_path_factory.mktemp("vectors") / "tiny.vec"
  path.write_text(f"{len(words)} {DIM}\n" + "".join(
      word + " " + " ".join(f"{value:.6f}" for value in row) + "\n" for word, row in zip(words, rows)),
                  encoding="utf-8")
  return str(path)


def head_config(tiny_corpus, cache_dir, vec_path, head, **overrides):
  return smoke_config(tiny_corpus, cache_dir, **{
      "model.head": head, "model.target_dim": DIM, "model.target_vectors": vec_path,
      "model.transformer.dropout": 0.0, "optim.warmup_steps": 0, **overrides})


def test_switching_the_head_leaves_input_layer_and_body_alone(tiny_corpus, cache_dir, vec_path):
  initial = {}
  for head in ("softmax", "vmf"):
    config = head_config(tiny_corpus, cache_dir, vec_path, head)
    model = build_model(config.model, 60)
    initial[head] = model.init(jax.random.key(0), np.zeros((1, 16), np.int32), train=False)["params"]
  # (A tied softmax head without output biases has no parameters of its own.)
  assert {"body", "input_layer"} <= set(initial["softmax"]) and sorted(initial["vmf"]) == ["body", "head", "input_layer"]
  for part in ("body", "input_layer"):  # same structure and the same initial values
    jax.tree.map(np.testing.assert_array_equal, initial["softmax"][part], initial["vmf"][part])
  assert initial["vmf"]["head"]["output"]["kernel"].shape == (32, DIM)


@pytest.mark.parametrize("head,tie", [("softmax", True), ("softmax", False), ("adaptive", True)])
def test_output_bias_false_leaves_out_every_output_bias(tiny_corpus, cache_dir, vec_path, head, tie):
  def head_parameters(output_bias):
    config = head_config(tiny_corpus, cache_dir, vec_path, head,
                         **{"model.output_bias": output_bias, "model.tie_embeddings": tie})
    params = build_model(config.model, 60).init(jax.random.key(0), np.zeros((1, 16), np.int32),
                                                train=False)["params"].get("head", {})
    return {jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}

  with_bias = head_parameters(True)
  biases = {name for name in with_bias if "bias" in name}
  assert biases  # the default has them
  assert head_parameters(False) == with_bias - biases


@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains_with_the_same_train_step(tiny_corpus, cache_dir, vec_path, head):
  config = head_config(tiny_corpus, cache_dir, vec_path, head)
  experiment = experiments.build_experiment(config)
  mesh, model = experiment.mesh, experiment.model
  words = experiment.task.words
  state = experiments.init_experiment_state(experiment)
  before = jax.device_get(state)
  step = steps.make_train_step(model, experiment.task.loss, experiment.optimizer, mesh, state, config.seed)
  tokens = experiment.task.corpus.splits["train"]
  for index in range(2):
    batch = lm_batches.window_batch(tokens, index, seed=0, batch_size=config.train.batch_size,
                                    length=config.train.seq_len)
    state, step_metrics = step(state, experiments.global_batch(mesh, batch))
  after = jax.device_get(state)
  summary = experiment.task.summarise(jax.device_get(step_metrics))
  assert np.isfinite(summary["loss"]) and summary["tokens"] == config.train.batch_size * config.train.seq_len
  for part in after.params:  # body, input_layer and the head's own parameters if it has any
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(jax.tree.leaves(after.params[part]), jax.tree.leaves(before.params[part])))
    assert moved > 1e-6, f"{part} parameters did not change"
  if head in ("softmax", "adaptive"):
    assert not target_vectors.has_target_table(state)
    return
  table = before.frozen["frozen"]["head"]["target_table"]
  np.testing.assert_array_equal(after.frozen["frozen"]["head"]["target_table"], table)
  np.testing.assert_allclose(table, target_vectors.target_table(words, vec_path, DIM))
  assert np.all(np.linalg.norm(table, axis=-1) > 0)  # no word is left without a target


@pytest.mark.parametrize("head", ["softmax", "adaptive", "vmf"])
def test_evaluation_reports_top1_and_top5_for_every_head(tiny_corpus, cache_dir, vec_path, head, tmp_path):
  config = head_config(tiny_corpus, cache_dir, vec_path, head,
                       **{"train.steps": 2, "train.eval_every": 2, "train.log_every": 1,
                          "train.neighbour_chunk_size": 7})  # 7 does not divide the vocabulary
  summary = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert 0.0 <= summary["accuracy"] <= summary["accuracy_top5"] <= 1.0
  assert summary["accuracy_top5"] > 0.0  # frequent words are easy to get into a top 5
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  train_records = [record for record in records if record["kind"] == "train"]
  assert train_records and all(np.isfinite(record["loss"]) for record in train_records)
  # Training reports accuracy only where the loss gives it for free (softmax argmax).
  # Accuracy is an evaluation metric for every head; training steps skip the vocabulary-wide pass.
  assert not any("accuracy" in record for record in train_records)


def test_a_missing_or_mismatched_target_file_is_a_clear_error(tiny_corpus, cache_dir, vec_path):
  words = corpora.load_corpus(head_config(tiny_corpus, cache_dir, vec_path, "cosine").data).vocabulary.words
  for overrides, message in (({"model.target_vectors": ""}, "needs model.target_vectors"),
                             ({"model.target_dim": DIM + 1}, "model.target_dim")):
    config = head_config(tiny_corpus, cache_dir, vec_path, "cosine", **overrides)
    experiment = experiments.build_experiment(config)
    with pytest.raises(ValueError, match=message):
      experiments.init_state(experiment.model, experiment.optimizer, config, experiment.mesh, words=words)


def test_target_table_rows_from_a_vec_file(vec_path):
  vectors = fasttext_vectors.load_vectors(vec_path)
  words = ["w3", "w59", "w0", "<eos>"]
  table = target_vectors.target_table(words, vec_path, DIM)
  np.testing.assert_array_equal(table[0], vectors["w3"])
  np.testing.assert_array_equal(table[2], vectors["w0"])
  # Words the .vec lacks get distinct random directions of a typical FastText norm.
  assert np.all(np.linalg.norm(table[[1, 3]], axis=-1) > 0)
  assert abs(float(table[1] @ table[3])) < np.linalg.norm(table[1]) * np.linalg.norm(table[3])
  np.testing.assert_array_equal(table, target_vectors.target_table(words, vec_path, DIM))  # fixed seed


def test_target_table_composes_unknown_words_from_a_bin(tmp_path):
  corpus = tmp_path / "corpus.txt"
  rng = np.random.default_rng(0)
  corpus.write_text("\n".join(" ".join(rng.choice(["cat", "cats", "dog", "dogs", "sat"], 6))
                              for _ in range(100)) + "\n", encoding="utf-8")
  model = fasttext_vectors.train_fasttext(str(corpus), str(tmp_path / "ft.bin"), dim=DIM, bucket=500,
                                          epochs=1, workers=1, min_count=1, log=lambda _: None)
  table = target_vectors.target_table(["cat", "catty", "dog"], str(tmp_path / "ft.bin"), DIM)
  np.testing.assert_allclose(table[0], model.wv["cat"], rtol=1e-6)
  np.testing.assert_allclose(table[1], model.wv["catty"], rtol=1e-6)  # composed from n-grams
  assert "catty" not in model.wv.key_to_index and np.any(table[1] != 0)


def test_head_cost_benchmark_runs_at_a_tiny_size():
  from configs import common
  from jaxlm.tools import benchmark
  config = benchmark.head_cost_config(common.base_config(), "vmf", width=16, tokens_per_step=64, seq_len=16,
                                      num_layers=1)
  result = benchmark.head_cost(config, 300, warmup_steps=1, timed_steps=1)
  assert result["head"] == "vmf" and result["tokens_per_step"] == 64 and np.isfinite(result["loss"])
  assert result["head_parameters"] == 16 * 16 + 16  # width -> target_dim, never vocabulary-sized
  assert result["compiled_peak_bytes"] > 0
  assert benchmark.head_cost_markdown_row(result).startswith("| vmf | 300 |")


def test_centered_targets_have_no_common_direction(vec_path):
  table = target_vectors.target_table([f"w{index}" for index in range(10)], vec_path, DIM)
  table = table + 5.0 * np.ones(DIM, np.float32)  # a strong shared direction, as FastText spaces have
  centered = target_vectors.center(table)
  np.testing.assert_allclose(centered.mean(axis=0), 0.0, atol=1e-6)
  unit = table / np.linalg.norm(table, axis=-1, keepdims=True)
  np.testing.assert_allclose(centered + unit.mean(axis=0), unit, atol=1e-6)  # only the mean removed
  cosines = lambda rows: (rows / np.linalg.norm(rows, axis=-1, keepdims=True)) @ (
      rows / np.linalg.norm(rows, axis=-1, keepdims=True)).T
  off_diagonal = ~np.eye(10, dtype=bool)
  assert cosines(table)[off_diagonal].mean() > 0.9 > 0.2 > cosines(centered)[off_diagonal].mean()


def test_the_config_switch_installs_centered_targets(tiny_corpus, cache_dir, vec_path):
  config = head_config(tiny_corpus, cache_dir, vec_path, "cosine", **{"model.center_targets": True})
  experiment = experiments.build_experiment(config)
  words = experiment.task.words
  state = experiments.init_experiment_state(experiment)
  installed = np.asarray(jax.device_get(state.frozen["frozen"]["head"]["target_table"]))
  np.testing.assert_allclose(installed, target_vectors.center(target_vectors.target_table(words, vec_path, DIM)),
                             atol=1e-6)


# Every head with the recurrent and convolutional bodies too (the transformer is covered
# above): one step through the trainer's own loop, on the family's smoke config.
@pytest.mark.parametrize("config_name", ["wt2_lstm", "wt2_tcn"])
@pytest.mark.parametrize("head", ["adaptive", "vmf"])
def test_heads_train_with_every_body(tiny_corpus, cache_dir, vec_path, config_name, head, tmp_path):
  import importlib
  config = importlib.import_module(f"configs.{config_name}").get_config("smoke")
  config.data.path, config.data.cache_dir = tiny_corpus, cache_dir
  config.model.head, config.model.target_dim, config.model.target_vectors = head, DIM, vec_path
  config.train.steps, config.train.eval_every, config.train.eval_tokens = 2, 2, 256
  summary = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert np.isfinite(summary["loss"]) and 0.0 <= summary["accuracy"] <= summary["accuracy_top5"] <= 1.0
