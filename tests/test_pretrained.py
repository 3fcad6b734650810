"""Input starts from config: FastText tables through build_model, frozen embeddings, bag checkpoints.

Everything runs the ru_lm smoke config on a tiny synthetic RusLit-format corpus, with a
FastText model trained on its train split exactly as launch/fasttext.py does.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ru_lm
from configs.common import base_config
from jaxlm import checkpoint
from jaxlm.training import experiments, loop, optim, steps
from jaxlm.starts import fasttext_rows
from jaxlm.data import corpora, fasttext_vectors, lm_batches, subwords
from works_helpers import write_works


def ru_config(variant: str, folder: str, cache: str, fasttext_path: str = ""):
  config = ru_lm.get_config(f"{variant},smoke")
  config.data.path, config.data.cache_dir = folder, cache
  config.model.fasttext_path = fasttext_path
  config.train.eval_tokens = 0
  return config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  folder = write_works(str(tmp_path_factory.mktemp("ruslit")))
  cache = str(tmp_path_factory.mktemp("cache"))
  config = ru_config("input=bag,init=fasttext", folder, cache)
  config.fasttext.workers = 1
  path = str(tmp_path_factory.mktemp("fasttext") / "ft.bin")
  fasttext_vectors.train_from_config(config.fasttext, corpora.train_text_file(config.data), path,
                                     log=lambda line: None, model_config=config.model)
  return folder, cache, path


def input_vectors(experiment, state, token_ids):
  """The input layer alone, through the built model: [batch, length, width]."""
  return experiment.model.apply({"params": state.params, **state.frozen}, token_ids,
                                method=lambda model, ids: model.input_layer(ids, train=False))


def init(config):
  experiment = experiments.build_experiment(config)
  return experiment, experiments.init_experiment_state(experiment), experiment.task.words


def test_bag_from_fasttext_reproduces_gensim_through_build_model(setup):
  folder, cache, path = setup
  config = ru_config("input=bag,init=fasttext", folder, cache, path)
  config.model.fasttext_std = 0.0  # FastText's own scale: exact
  experiment, state, words = init(config)
  vectors = fasttext_vectors.load_vectors(path)
  outputs = np.asarray(input_vectors(experiment, state, jnp.arange(len(words))[None])[0])  # [vocab, 32]
  assert sum(word in vectors.key_to_index for word in words) > len(words) // 2
  for index, word in enumerate(words):  # known words, and <unk>/<eos> composed from n-grams
    np.testing.assert_allclose(outputs[index], vectors[word], atol=1e-5, err_msg=word)
  # Rescaled (ru_lm's 0.02): one factor for every row, so the bag is that factor times wv[word].
  config.model.fasttext_std = 0.02
  _, scaled_state, _ = init(config)
  table = np.asarray(scaled_state.params["input_layer"]["table"])
  np.testing.assert_allclose(table.std(), 0.02, rtol=1e-3)
  factor = table.std() / np.asarray(state.params["input_layer"]["table"]).std()
  scaled = np.asarray(input_vectors(experiment, scaled_state, jnp.arange(len(words))[None])[0])
  np.testing.assert_allclose(scaled, factor * outputs, atol=1e-6)
  # The same state shapes as the restore target, n-gram ids included.
  target = experiments.experiment_target(experiment)
  assert jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), target) == jax.tree.map(
      lambda leaf: (leaf.shape, leaf.dtype), state)


def test_scratch_bag_gets_its_ngram_ids_and_a_seeded_table(setup):
  folder, cache, _ = setup
  config = ru_config("input=bag,init=scratch", folder, cache)
  _, state, words = init(config)
  ids, mask = subwords.subword_ids(words, min_n=3, max_n=5, bucket=config.model.bucket)
  bag = state.frozen["frozen"]["input_layer"]
  np.testing.assert_array_equal(bag["ngram_ids"], ids)
  np.testing.assert_array_equal(bag["ngram_mask"], mask)
  _, again, _ = init(config)
  np.testing.assert_array_equal(state.params["input_layer"]["table"], again.params["input_layer"]["table"])


def test_bag_checkpoint_restores_and_resumes_without_the_fasttext_file(setup, tmp_path):
  folder, cache, path = setup
  copy = str(tmp_path / "ft.bin")
  shutil.copy(path, copy)
  config = ru_config("input=bag,init=fasttext", folder, cache, copy)
  config.train.steps, config.train.eval_every = 2, 2
  workdir = str(tmp_path / "run")
  experiment, state, _ = init(config)
  assert state.frozen["frozen"]["input_layer"]["ngram_mask"].sum(-1).max() > 1  # real bags, not placeholders
  checkpoint.write_workdir(workdir, config, run={"task": "causal_lm", "best_metric": "perplexity", "best_mode": "min"},
                           words=experiment.task.words, fingerprint=experiment.task.fingerprint)  # as a run writes it
  manager = checkpoint.manager(workdir, config.train.keep_checkpoints)
  checkpoint.save(manager, 0, state, {"perplexity": 1.0})
  restored = checkpoint.restore(manager, 0, experiments.experiment_target(experiment))
  manager.close()
  for saved, loaded in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(saved, loaded)
  os.remove(copy)  # a resume reads only its checkpoint
  summary = loop.train_and_evaluate(config, workdir, progress=False)
  assert np.isfinite(summary["loss"])


def test_frozen_table_gets_no_update_and_no_optimiser_state(setup):
  folder, cache, path = setup
  config = ru_config("input=word,init=frozen", folder, cache, path)
  config.model.fasttext_std = 0.0
  experiment, state, words = init(config)
  table = np.asarray(state.params["input_layer"]["table"])
  vectors = fasttext_vectors.load_vectors(path)
  known = words.index(next(word for word in words if word in vectors.key_to_index))
  np.testing.assert_allclose(table[known], vectors[words[known]], atol=1e-6)  # fasttext_words start
  sizes = [leaf.size for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim]
  trainable = sum(leaf.size for leaf in jax.tree.leaves(state.params)) - table.size
  assert sum(sizes) == 2 * trainable  # AdamW's two moments, for everything but the table
  before = jax.device_get(state.params)
  step = steps.make_train_step(experiment.model, experiment.task.loss, experiment.optimizer, experiment.mesh,
                               state, config.seed)

  for index in range(2):
    batch = lm_batches.window_batch(experiment.task.corpus.splits["train"], index, seed=0,
                                    batch_size=config.train.batch_size, length=config.train.seq_len)
    state, _ = step(state, experiments.global_batch(experiment.mesh, batch))
  after = jax.device_get(state.params)
  np.testing.assert_array_equal(after["input_layer"]["table"], table)
  moved = [not np.array_equal(new, old)
           for new, old in zip(jax.tree.leaves(after["body"]), jax.tree.leaves(before["body"]))]
  # ru_lm's head is the adaptive softmax: its own parameters train though the tied table is frozen.
  assert all(moved) and not np.array_equal(after["head"]["head_bias"], before["head"]["head_bias"])


def test_embedding_learning_rate_multiplier():
  config = base_config()
  config.optim.update(name="sgd", lr=0.1, clip_norm=0.0, weight_decay=0.0, warmup_steps=0, schedule="constant")
  params = {"input_layer": {"table": jnp.ones((3, 2))}, "body": {"kernel": jnp.ones((2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  config.model.embedding_lr_multiplier = 2.5
  optimizer = optim.build_optimizer(config.optim, 10, config.model)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  np.testing.assert_allclose(updates["input_layer"]["table"], -0.25)
  np.testing.assert_allclose(updates["body"]["kernel"], -0.1)
  config.model.freeze_embeddings = True
  with pytest.raises(ValueError, match="contradict"):
    optim.build_optimizer(config.optim, 10, config.model)


def test_fasttext_starts_fail_clearly(setup, tmp_path):
  folder, cache, path = setup
  with pytest.raises(ValueError, match="model.init='fasttext_bag' needs model.fasttext_path"):
    experiments.build_experiment(ru_config("input=bag,init=fasttext", folder, cache, ""))
  model_config = base_config().model
  model_config.update(init="fasttext_bag", input="word", fasttext_path=path)
  with pytest.raises(ValueError, match="needs model.input='bag'"):
    fasttext_rows.check_config(model_config)
  missing = str(tmp_path / "missing.bin")
  with pytest.raises(FileNotFoundError, match=f"{missing}: FastText file not found"):
    init(ru_config("input=word,init=fasttext", folder, cache, missing))
  config = ru_config("input=word,init=fasttext", folder, cache, path)
  config.model.init = "fasttext_pieces"
  with pytest.raises(ValueError, match="needs a SentencePiece vocabulary"):
    init(config)
