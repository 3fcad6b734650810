"""Sparse embedding updates (optim.embedding_updates="lazy"): lazy AdamW and the train step's row view."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import REPO_ROOT
from jaxlm.models import embedding_bag, embeddings
from jaxlm.training import experiments, loop, optim, sparse_rows, steps
from task_fixtures import assert_one_device_step_matches_four, finetune_config, write_classification

B1, B2, EPS, DECAY = 0.9, 0.99, 1e-8, 0.1


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
  return write_classification(str(tmp_path_factory.mktemp("sentences")))


def _params(seed=0):
  keys = jax.random.split(jax.random.key(seed))
  return {"input_layer": {"table": jax.random.normal(keys[0], (6, 3))}, "head": {"bias": jax.random.normal(keys[1], (3,))}}


def _lazy_and_dense(learning_rate=0.05):
  lazy = optim.lazy_adamw(learning_rate, b1=B1, b2=B2, eps=EPS, weight_decay=DECAY, mask=optim.decay_mask)
  dense = optax.adamw(learning_rate, b1=B1, b2=B2, eps=EPS, weight_decay=DECAY, mask=optim.decay_mask)
  return lazy, dense


def test_lazy_adamw_is_adamw_when_every_row_is_touched():
  lazy, dense = _lazy_and_dense()
  params = _params()["input_layer"]
  lazy_params, dense_params = params, params
  lazy_state, dense_state = lazy.init(params), dense.init(params)
  every_row = jnp.arange(6, dtype=jnp.int32)
  for step in range(4):
    grads = {"table": jax.random.normal(jax.random.key(10 + step), (6, 3))}
    updates, lazy_state = lazy.update(grads, lazy_state, lazy_params, touched_rows=every_row)
    lazy_params = jax.tree.map(lambda p, u: p.at[every_row].add(u), lazy_params, updates)
    updates, dense_state = dense.update(grads, dense_state, dense_params)
    dense_params = optax.apply_updates(dense_params, updates)
  np.testing.assert_allclose(lazy_params["table"], dense_params["table"], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(lazy_state[0].mu["table"], dense_state[0].mu["table"], rtol=1e-6)
  np.testing.assert_allclose(lazy_state[0].nu["table"], dense_state[0].nu["table"], rtol=1e-6)


def test_lazy_adamw_leaves_untouched_rows_and_their_moments_as_they_were():
  lazy, _ = _lazy_and_dense(learning_rate=0.05)
  table = _params()["input_layer"]
  state = lazy.init(table)
  # Step 1 reads every row, so every row has moments; step 2 reads rows 1 and 4 (6: padding).
  state = lazy.update({"table": jnp.ones((6, 3))}, state, table, touched_rows=jnp.arange(6, dtype=jnp.int32))[1]
  before = jax.device_get(state)
  rows = jnp.array([1, 4, 6], jnp.int32)
  gradient = jax.random.normal(jax.random.key(3), (3, 3))
  updates, state = lazy.update({"table": gradient}, state, table, touched_rows=rows)
  untouched = np.array([0, 2, 3, 5])
  for name in ("mu", "nu"):
    np.testing.assert_array_equal(np.asarray(getattr(state[0], name)["table"])[untouched],
                                  np.asarray(getattr(before[0], name)["table"])[untouched])
  # The touched rows follow AdamW with the global step count (2) in the bias correction.
  mu = B1 * before[0].mu["table"][np.array([1, 4])] + (1 - B1) * gradient[:2]
  nu = B2 * before[0].nu["table"][np.array([1, 4])] + (1 - B2) * gradient[:2] ** 2
  expected = -0.05 * ((mu / (1 - B1 ** 2)) / (np.sqrt(nu / (1 - B2 ** 2)) + EPS)
                      + DECAY * np.asarray(table["table"])[np.array([1, 4])])
  np.testing.assert_allclose(np.asarray(updates["table"])[:2], expected, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(updates["table"]).shape, (3, 3))


TOKEN_IDS = jnp.array([[3, 1, 3, 0], [5, 5, 2, 1]], jnp.int32)  # int32 [2, 4]: words 4 and 6 are not read


def _input_layer(layer: str):
  """(module, variables): a 7-word table, or a bag of 7 words over 9 buckets (up to 2 n-gram rows a word)."""
  if layer == "word":
    module = embeddings.WordEmbedding(vocab_size=7, width=4)
    return module, module.init(jax.random.key(0), TOKEN_IDS, train=False)
  module = embedding_bag.EmbeddingBag(vocab_size=7, width=4, bucket=9, subword_width=3)
  variables = module.init(jax.random.key(0), TOKEN_IDS, train=False)
  ngram_ids = np.array([[word, 7 + word % 9, 7 + (2 * word) % 9] for word in range(7)], np.int32)
  mask = np.array([[True, word % 2 == 0, word != 3] for word in range(7)])
  return module, {"params": variables["params"], "frozen": {"ngram_ids": jnp.asarray(ngram_ids),
                                                            "ngram_mask": jnp.asarray(mask)}}


@pytest.mark.parametrize("layer", ["word", "bag"])
def test_a_view_gives_the_layer_s_vectors_and_its_table_gradient_at_the_rows_read(layer):
  token_ids = TOKEN_IDS
  module, variables = _input_layer(layer)
  frozen = jax.device_get(variables.get("frozen", {}))
  arrays = module.host_view({name: np.asarray(array) for name, array in frozen.items()}, np.asarray(token_ids))
  read = module.rows_read({name: np.asarray(array) for name, array in frozen.items()}, np.asarray(token_ids))
  np.testing.assert_array_equal(arrays["rows"][:read.size], read)
  assert np.all(arrays["rows"][read.size:] == module.num_rows())  # padding: the row count
  # One device's rows of the global batch get the global view's vectors for their tokens.
  for device_tokens in (token_ids, token_ids[1:]):
    view = module.sparse_view(variables, device_tokens, jax.tree.map(jnp.asarray, arrays))
    np.testing.assert_allclose(view.module.apply(view.variables, view.token_ids, train=False),
                               module.apply(variables, device_tokens, train=False), rtol=1e-6, atol=1e-7)
  view = module.sparse_view(variables, token_ids, jax.tree.map(jnp.asarray, arrays))
  cotangent = jax.random.normal(jax.random.key(1), (2, 4, 4))
  full = jax.grad(lambda table: jnp.sum(cotangent * module.apply(
      {**variables, "params": {"table": table}}, token_ids, train=False)))(variables["params"]["table"])
  part = jax.grad(lambda table: jnp.sum(cotangent * view.module.apply(
      {**view.variables, "params": {"table": table}}, view.token_ids, train=False)))(view.variables["params"]["table"])
  rows = np.asarray(view.rows)
  real = rows < full.shape[0]
  np.testing.assert_allclose(np.asarray(part)[real], np.asarray(full)[rows[real]], rtol=1e-6)
  unread = np.setdiff1d(np.arange(full.shape[0]), rows[real])
  assert np.all(np.asarray(full)[unread] == 0)  # the rows outside the view get no gradient anyway


@pytest.mark.parametrize("layer", ["word", "bag"])
def test_a_view_for_a_tied_head_keeps_every_word_row_first_and_scores_words_as_the_layer(layer):
  token_ids = TOKEN_IDS
  module, variables = _input_layer(layer)
  frozen = {name: np.asarray(array) for name, array in jax.device_get(variables.get("frozen", {})).items()}
  arrays = module.host_view(frozen, np.asarray(token_ids), keep_output_rows=True)
  rows = arrays["rows"]
  np.testing.assert_array_equal(rows[:7], np.arange(7))  # every word's row, in word order
  buckets = np.setdiff1d(module.rows_read(frozen, np.asarray(token_ids)), np.arange(7))
  np.testing.assert_array_equal(rows[7:7 + buckets.size], buckets)
  assert np.all(rows[7 + buckets.size:] == module.num_rows())
  view = module.sparse_view(variables, token_ids, jax.tree.map(jnp.asarray, arrays), keep_output_rows=True)
  hidden = jax.random.normal(jax.random.key(1), (2, 4, 4))

  def tied_loss(layer_module, layer_variables, tokens):  # the input vectors, and a tied head's logits
    vectors = layer_module.apply(layer_variables, tokens, train=False)
    logits = layer_module.apply(layer_variables, hidden + vectors, method="attend")  # [2, 4, 7]
    return jnp.sum(jnp.sin(logits)), logits

  (_, full_logits), full = jax.value_and_grad(
      lambda table: tied_loss(module, {**variables, "params": {"table": table}}, token_ids),
      has_aux=True)(variables["params"]["table"])
  (_, view_logits), part = jax.value_and_grad(
      lambda table: tied_loss(view.module, {**view.variables, "params": {"table": table}}, view.token_ids),
      has_aux=True)(view.variables["params"]["table"])
  np.testing.assert_allclose(view_logits, full_logits, rtol=1e-5, atol=1e-6)
  real = np.asarray(view.rows) < full.shape[0]
  np.testing.assert_allclose(np.asarray(part)[real], np.asarray(full)[np.asarray(view.rows)[real]], rtol=1e-5,
                             atol=1e-6)
  unread = np.setdiff1d(np.arange(full.shape[0]), np.asarray(view.rows)[real])
  assert np.all(np.asarray(full)[unread] == 0)  # the buckets outside the view get no gradient anyway
  assert np.any(np.asarray(full)[[4, 6]] != 0)  # words no token reads are scored, so they have one


def test_a_bag_view_without_the_word_rows_refuses_to_score_words():
  module = embedding_bag.PackedBag(vocab_size=4, width=2, num_rows=8)
  variables = {"params": {"table": jnp.zeros((8, 2))},
               "frozen": {"pair_rows": jnp.zeros(4, jnp.int32), "pair_words": jnp.zeros(4, jnp.int32),
                          "pair_weights": jnp.zeros(4)}}
  with pytest.raises(ValueError, match="keep_output_rows=True"):
    module.apply(variables, jnp.zeros((1, 1, 2)), method="attend")


def _first_steps(config, steps_to_run=2):
  experiment = experiments.build_experiment(config)
  state = experiments.init_experiment_state(experiment)
  step = steps.make_train_step(experiment.model, experiment.task.loss, experiment.optimizer, experiment.mesh, state,
                               config.seed, sparse_embeddings=optim.lazy_embeddings(config.optim))
  before = jax.device_get(state.params)
  records = []
  for index in range(steps_to_run):
    batch = experiment.task.train_batch(index, seed=config.seed, batch_size=config.train.batch_size)
    state, step_metrics = step(state, experiments.global_batch(experiment.mesh, batch))
    records.append(jax.device_get(step_metrics))
  return experiment, before, jax.device_get(state.params), records


def test_the_lazy_step_sees_the_dense_step_s_loss_and_gradient_and_moves_only_rows_read(sentences):
  overrides = {"train.batch_size": 4, "model.init": "scratch", "optim.warmup_steps": 0}
  dense = _first_steps(finetune_config("task=rucola,body=fasttext", sentences, **overrides,
                                       **{"optim.embedding_updates": "dense"}), steps_to_run=1)
  lazy = _first_steps(finetune_config("task=rucola,body=fasttext", sentences, **overrides,
                                      **{"optim.embedding_updates": "lazy"}), steps_to_run=1)
  for key in ("loss_sum", "grad_norm"):  # the same forward pass, and the same gradient (zero rows add nothing)
    np.testing.assert_allclose(lazy[3][0][key], dense[3][0][key], rtol=1e-5)
  experiment, before, after, _ = lazy
  batch = experiment.task.train_batch(0, seed=experiment.config.seed, batch_size=4)
  bag = jax.device_get(experiments.init_experiment_state(experiment).frozen)["frozen"]["input_layer"]
  read = np.unique(np.asarray(bag["ngram_ids"])[batch["inputs"]][np.asarray(bag["ngram_mask"])[batch["inputs"]]])
  moved = np.flatnonzero(np.any(after["input_layer"]["table"] != before["input_layer"]["table"], axis=-1))
  assert set(moved) <= set(read) and len(moved) > 0
  dense_moved = np.flatnonzero(np.any(dense[2]["input_layer"]["table"] != dense[1]["input_layer"]["table"], axis=-1))
  assert len(dense_moved) > len(read)  # dense AdamW's decay moves every row


def _masked_lm_config(cache_dir, head, updates):
  """ru_mlm's smoke masked LM on RusLit's shipped sample: the bag input under a tied head."""
  from configs import ru_mlm
  config = ru_mlm.get_config(f"smoke,input=bag,head={head}")
  config.data.path = os.path.join(REPO_ROOT, "jaxlm", "data", "ruslit-sample")
  config.data.cache_dir = cache_dir
  config.optim.embedding_updates, config.optim.warmup_steps = updates, 0
  return config


def test_a_tied_head_s_lazy_step_is_adamw_on_the_word_rows_and_the_buckets_read(cache_dir):
  """The first step from the same start: lazy moves every word row and the buckets read exactly as
  dense AdamW does (their gradient and moments are the same), and leaves the other buckets alone.
  The adaptive head reads the view's output_rows; a softmax head's attend is the view test's."""
  head = "adaptive"
  dense = _first_steps(_masked_lm_config(cache_dir, head, "dense"), steps_to_run=1)
  experiment, before, after, records = _first_steps(_masked_lm_config(cache_dir, head, "lazy"), steps_to_run=1)
  for key in ("loss_sum", "grad_norm"):
    np.testing.assert_allclose(records[0][key], dense[3][0][key], rtol=1e-5)
  vocab = experiment.model.input_layer.vocab_size
  batch = experiment.task.train_batch(0, seed=experiment.config.seed, batch_size=experiment.config.train.batch_size)
  bag = jax.device_get(experiments.init_experiment_state(experiment).frozen)["frozen"]["input_layer"]
  read = np.unique(np.asarray(bag["ngram_ids"])[batch["inputs"]][np.asarray(bag["ngram_mask"])[batch["inputs"]]])
  viewed = np.union1d(np.arange(vocab), read)
  table, dense_table = after["input_layer"]["table"], dense[2]["input_layer"]["table"]
  np.testing.assert_allclose(table[viewed], dense_table[viewed], rtol=1e-5, atol=1e-7)
  moved = np.flatnonzero(np.any(table != before["input_layer"]["table"], axis=-1))
  assert set(moved) <= set(viewed) and set(np.arange(vocab)) <= set(moved)
  unread = np.setdiff1d(np.arange(table.shape[0]), viewed)
  assert unread.size > 0 and np.all(dense_table[unread] != before["input_layer"]["table"][unread])  # decayed
  for left, right in zip(jax.tree.leaves({k: v for k, v in after.items() if k != "input_layer"}),
                         jax.tree.leaves({k: v for k, v in dense[2].items() if k != "input_layer"})):
    np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-7)


def test_one_device_equals_four_with_lazy_updates_under_a_tied_head(cache_dir):
  assert_one_device_step_matches_four(_masked_lm_config(cache_dir, "adaptive", "lazy"))


def test_the_lazy_step_finds_its_rows_from_the_host_batch_without_reading_the_devices(sentences, monkeypatch):
  config = finetune_config("task=rucola,body=fasttext", sentences, **{"optim.embedding_updates": "lazy"})
  _, _, from_devices, _ = _first_steps(config)
  experiment = experiments.build_experiment(config)
  state = experiments.init_experiment_state(experiment)
  step = steps.make_train_step(experiment.model, experiment.task.loss, experiment.optimizer, experiment.mesh, state,
                               config.seed, sparse_embeddings=True)
  reads = []
  original = jax.device_get
  monkeypatch.setattr(jax, "device_get", lambda tree: reads.append(tree) or original(tree))
  for index in range(2):
    batch = experiment.task.train_batch(index, seed=config.seed, batch_size=config.train.batch_size)
    state, _ = step(state, experiments.global_batch(experiment.mesh, batch), host_inputs=batch["inputs"])
  monkeypatch.undo()
  assert reads == []  # no copy of the batch back from the devices
  after = jax.device_get(state.params)
  np.testing.assert_array_equal(after["input_layer"]["table"], from_devices["input_layer"]["table"])


def test_one_device_equals_four_with_lazy_updates(sentences):
  # 8 rows over 4 devices: every device reads its own words, the update covers them all.
  assert_one_device_step_matches_four(finetune_config("task=rucola,body=lstm", sentences,
                                                      **{"optim.embedding_updates": "lazy"}))


@pytest.mark.parametrize("updates", ["dense", "lazy"])
def test_a_frozen_table_gets_no_update(updates, sentences):
  config = finetune_config("task=rucola,body=fasttext", sentences, **{"optim.embedding_updates": updates,
                                                                      "model.freeze_embeddings": True})
  _, before, after, _ = _first_steps(config)
  np.testing.assert_array_equal(after["input_layer"]["table"], before["input_layer"]["table"])
  assert not np.array_equal(after["head"]["classifier"]["output"]["kernel"],
                            before["head"]["classifier"]["output"]["kernel"])


def test_a_lazy_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run(sentences, tmp_path):
  """A SIGKILL after checkpoint 3 leaves the workdir as the whole run's with its later checkpoints
  gone (metrics records after the checkpoint are dropped by the resume): the resume must repeat
  steps 4-6 exactly, moments of rows not read since included."""
  config = finetune_config("task=rucola,body=fasttext", sentences, **{
      "optim.embedding_updates": "lazy", "train.steps": 6, "train.eval_every": 3, "train.log_every": 1,
      "train.keep_checkpoints": 10})
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  loop.train_and_evaluate(config, str(whole), progress=False)
  shutil.copytree(whole, killed)
  shutil.rmtree(killed / "checkpoints" / "6")
  loop.train_and_evaluate(config, str(killed), progress=False)
  losses = lambda workdir: {record["step"]: record["loss"] for record in map(json.loads, open(workdir / "metrics.jsonl"))
                            if record["kind"] == "train"}
  assert losses(killed) == losses(whole) and sorted(losses(whole)) == list(range(1, 7))


def test_lazy_updates_refuse_a_word_table_under_a_tied_head_and_other_optimisers():
  optim_config = ml_collections.ConfigDict(dict(name="adamw", embedding_updates="lazy"))
  for head in ("softmax", "adaptive"):
    with pytest.raises(ValueError, match=f"tied {head} head reads every row of model.input='word'"):
      optim.check_embedding_updates(optim_config, ml_collections.ConfigDict(dict(head=head, tie_embeddings=True,
                                                                                 input="word")))
    # A bag's buckets are what lazy updates save; an untied head reads no row of the table.
    assert optim.check_embedding_updates(
        optim_config, ml_collections.ConfigDict(dict(head=head, tie_embeddings=True, input="bag"))) == "lazy"
    assert optim.check_embedding_updates(
        optim_config, ml_collections.ConfigDict(dict(head=head, tie_embeddings=False, input="word"))) == "lazy"
  optim_config.name = "sgd"
  with pytest.raises(ValueError, match="optim.name='sgd' has no lazy form"):
    optim.check_embedding_updates(optim_config)


def test_a_workdir_saved_before_the_key_existed_evaluates_as_dense(sentences, tmp_path):
  from jaxlm import checkpoint
  from jaxlm.training import evaluate
  config = finetune_config("task=rucola,body=fasttext", sentences, **{"train.steps": 2, "train.eval_every": 2,
                                                                      "optim.embedding_updates": "dense"})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  path = tmp_path / checkpoint.CONFIG_FILE
  saved = json.loads(path.read_text())
  del saved["optim"]["embedding_updates"]
  path.write_text(json.dumps(saved))
  [result] = evaluate.evaluate_workdir(str(tmp_path), splits=("valid",))
  assert np.isfinite(result["loss"])


@pytest.mark.parametrize("arg", ["task=rucola,body=fasttext", "task=rucola,body=transformer", "task=upos,body=lstm",
                                 "task=xquad_ru,body=lstm"])
def test_evaluation_through_packed_views_scores_as_the_model_itself(arg, tmp_path, monkeypatch):
  """The eval step (and, for span QA's exact match, the predict step) reads a bag through packed views."""
  from task_fixtures import write_squad, write_treebank
  from jaxlm.training import evaluation
  folder = (write_classification if "rucola" in arg else write_treebank if "upos" in arg else write_squad)(
      str(tmp_path))
  reader = {"task.span_head": "reader", "task.max_length": 24, "task.question_length": 8, "task.stride": 8}
  experiment = experiments.build_experiment(finetune_config(arg, folder, **(reader if "xquad" in arg else {})))
  state = experiments.init_experiment_state(experiment)
  assert sparse_rows.evaluation_reader(experiment.model, state.frozen) is not None
  packed = evaluation.make_evaluator(experiment)(state, "valid", batch_size=8)
  monkeypatch.setattr(sparse_rows, "evaluation_reader", lambda model, frozen: None)
  plain = evaluation.make_evaluator(experiment)(state, "valid", batch_size=8)
  assert set(packed) == set(plain)
  for key, value in plain.items():
    np.testing.assert_allclose(packed[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_a_head_that_reads_the_input_table_is_evaluated_as_it_is(tmp_path):
  from conftest import smoke_config, write_tiny_corpus
  config = smoke_config(write_tiny_corpus(str(tmp_path / "corpus")), str(tmp_path / "cache"),
                        **{"model.input": "bag", "model.bucket": 50})
  experiment = experiments.build_experiment(config)  # a tied softmax head scores every word's row
  assert sparse_rows.evaluation_reader(experiment.model, experiments.init_experiment_state(experiment).frozen) is None
