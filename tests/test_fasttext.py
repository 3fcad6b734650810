"""FastText: a tiny gensim model trained here; the bag built from it reproduces gensim's wv[word]."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.data import fasttext_vectors
from jaxlm.models import embedding_bag, embeddings

SETTINGS = dict(sg=True, dim=16, min_n=3, max_n=5, bucket=2000, epochs=2, workers=1, min_count=2,
                window=3, seed=1)
CORPUS_WORDS = "ёжик ёжики naïve кот🙂 кот котик собака собаки the cat cats sat on mat мир".split()
# Out of FastText's vocabulary: Latin, Cyrillic, emoji, and "" (no n-grams: gensim gives zeros).
UNSEEN = ["naïveté", "ёжиков", "🙂🙂", "собачка", "xyz", "a", ""]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  folder = tmp_path_factory.mktemp("fasttext")
  rng = np.random.default_rng(0)
  corpus = folder / "corpus.txt"
  corpus.write_text("\n".join(" ".join(rng.choice(CORPUS_WORDS, 8)) for _ in range(200)) + "\n",
                    encoding="utf-8")
  lines = []
  model = fasttext_vectors.train_fasttext(str(corpus), str(folder / "ft.bin"), log=lines.append,
                                          **SETTINGS)
  assert sum(line.startswith("fasttext epoch") for line in lines) == SETTINGS["epochs"]
  return folder, model


def _bag_outputs(words, input_variables, bucket):
  """Runs a real EmbeddingBag over every word of `words` once: -> [vocab, width]."""
  width = input_variables["params"]["table"].shape[1]
  module = embedding_bag.EmbeddingBag(vocab_size=len(words), width=width, bucket=bucket)
  token_ids = jnp.arange(len(words))[None]  # [1, vocab]
  variables = module.init(jax.random.key(0), token_ids, train=False)
  wrapped = embedding_bag.install_input_variables(
      {collection: {"input_layer": tree} for collection, tree in variables.items()}, input_variables)
  variables = {collection: tree["input_layer"] for collection, tree in wrapped.items()}
  return np.asarray(module.apply(variables, token_ids, train=False)[0])


def test_bag_reproduces_gensim(trained):
  folder, model = trained
  path = str(folder / "ft.bin")
  loaded = fasttext_vectors.load_vectors(path, expected_dim=16)
  words = ["<unk>"] + sorted(set(CORPUS_WORDS)) + UNSEEN  # an LM vocabulary, index = token id
  assert {"ёжик", "naïve", "кот🙂"} <= set(loaded.key_to_index)
  assert not any(word in loaded.key_to_index for word in UNSEEN)
  scratch_table = np.random.default_rng(1).normal(size=(len(words) + 2000, 16)).astype(np.float32)
  input_variables = fasttext_vectors.initial_input_variables(
      words, scratch_table, input_kind="bag", init="fasttext_bag", fasttext_path=path,
      bucket=2000, min_n=3, max_n=5)
  outputs = _bag_outputs(words, input_variables, bucket=2000)  # [vocab, 16]
  for index, word in enumerate(words):
    np.testing.assert_allclose(outputs[index], model.wv[word], atol=1e-5, err_msg=word)
    np.testing.assert_allclose(outputs[index], loaded[word], atol=1e-5, err_msg=word)


def test_scratch_bag_and_word_init(trained):
  folder, model = trained
  path = str(folder / "ft.bin")
  words = ["<unk>", "ёжик", "naïve", "unseen"]
  table = np.zeros((len(words), 16), np.float32)
  word_init = fasttext_vectors.initial_input_variables(
      words, table, input_kind="word", init="fasttext_words", fasttext_path=path)
  assert set(word_init) == {"params"}
  rows = word_init["params"]["table"]
  np.testing.assert_allclose(rows[1:3], [model.wv["ёжик"], model.wv["naïve"]], atol=1e-6)
  assert not rows[0].any() and not rows[3].any()  # unknown words keep their rows
  # Installed into a plain word table, the model sees fastText's vectors.
  module = embeddings.WordEmbedding(vocab_size=4, width=16)
  token_ids = jnp.array([[1, 2]])
  variables = module.init(jax.random.key(0), token_ids, train=False)
  wrapped = embedding_bag.install_input_variables({"params": {"input_layer": variables["params"]}},
                                                  word_init)
  outputs = module.apply({"params": wrapped["params"]["input_layer"]}, token_ids, train=False)
  np.testing.assert_allclose(outputs[0], rows[1:3], atol=1e-6)
  # Scratch bag: no params change, only the n-gram ids; every word keeps its own row.
  scratch = fasttext_vectors.initial_input_variables(
      words, np.zeros((len(words) + 100, 16)), input_kind="bag", bucket=100, min_n=3, max_n=5)
  assert set(scratch) == {"frozen"} and (scratch["frozen"]["ngram_ids"][:, 0] == np.arange(4)).all()


def test_vec_round_trip_and_dimension_check(trained, tmp_path):
  _, model = trained
  vec = tmp_path / "ft.vec"
  model.wv.save_word2vec_format(str(vec), binary=False)
  loaded = fasttext_vectors.load_vectors(str(vec), expected_dim=16)
  np.testing.assert_allclose(loaded["ёжик"], model.wv["ёжик"], atol=1e-5)
  with pytest.raises(ValueError, match=f"{vec}.*dimension 16.*expects 32"):
    fasttext_vectors.load_vectors(str(vec), expected_dim=32)
  with pytest.raises(ValueError, match=f"{vec}.*config expects 32"):
    fasttext_vectors.initial_input_variables(["ёжик"], np.zeros((1, 32)), input_kind="word",
                                             init="fasttext_words", fasttext_path=str(vec))
  with pytest.raises(ValueError, match="needs a .bin"):
    fasttext_vectors.bag_rows(np.zeros((2001, 16)), ["ёжик"], loaded, bucket=2000, min_n=3,
                              max_n=5, path=str(vec))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "trailing"])
def test_bad_bin_is_a_clear_error(trained, tmp_path, damage):
  folder, _ = trained
  data = (folder / "ft.bin").read_bytes()
  bad = {"truncated": data[:len(data) // 2], "empty": b"", "trailing": data + b"\0\0",
         "garbage": np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()}[damage]
  path = tmp_path / f"{damage}.bin"
  path.write_bytes(bad)
  with pytest.raises(ValueError, match=f"{path}: truncated, corrupted"):
    fasttext_vectors.load_vectors(str(path))


@pytest.mark.parametrize("text,why", [
    ("2 3\nab 1 2 3\n", "promises 2 words"),
    ("1 3\nab 1 2\n", "line 2 has 2 values"),
    ("nonsense\n", "first line"),
    ("1 2\nab 1 nan\n", "NaN"),
])
def test_bad_vec_is_a_clear_error(tmp_path, text, why):
  path = tmp_path / "bad.vec"
  path.write_text(text)
  with pytest.raises(ValueError, match=why) as error:
    fasttext_vectors.load_vectors(str(path))
  assert str(path) in str(error.value)


def test_pickles_and_unrelated_vocabularies_are_refused(trained, tmp_path):
  folder, _ = trained
  for name in ("ft.model", "ft.pkl", "ft"):
    with pytest.raises(ValueError, match=f"{name}: refusing.*pickles"):
      fasttext_vectors.load_vectors(str(tmp_path / name))
  path = str(folder / "ft.bin")
  with pytest.raises(ValueError, match=f"{path}: no word of the corpus vocabulary"):
    fasttext_vectors.initial_input_variables(["zzz", "qqq"], np.zeros((2, 16)), input_kind="word",
                                             init="fasttext_words", fasttext_path=path)
  with pytest.raises(ValueError, match="trained with .*'bucket': 2000"):
    fasttext_vectors.initial_input_variables(["ёжик"], np.zeros((11, 16)), input_kind="bag",
                                             init="fasttext_bag", fasttext_path=path, bucket=10)


@pytest.mark.slow  # a subprocess, about 2 s
def test_launcher(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("ёжик кот мир\n" * 20, encoding="utf-8")
  config_file = tmp_path / "ft_config.py"
  fields = dict(SETTINGS, epochs=1, min_count=1, corpus=str(corpus))
  config_file.write_text("import ml_collections\n\ndef get_config():\n  config = ml_collections."
                         f"ConfigDict()\n  config.fasttext = ml_collections.ConfigDict({fields!r})\n"
                         "  return config\n")
  output = tmp_path / "out.bin"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, "launch/fasttext.py", f"--config={config_file}",
                           f"--output={output}"], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=root), timeout=120)
  assert result.returncode == 0, result.stderr
  assert "fasttext epoch 1/1" in result.stdout
  assert "ёжик" in fasttext_vectors.load_vectors(str(output)).key_to_index


@pytest.mark.slow  # a subprocess, a few seconds
def test_launcher_trains_a_language_models_vectors_on_its_corpus_train_split(tmp_path):
  """configs/ru_lm.py as the comparison grid's FastText cells run it: the corpus is data.path's train split."""
  from conftest import write_tiny_corpus
  corpus = write_tiny_corpus(str(tmp_path / "corpus"))
  output = tmp_path / "out.bin"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, "launch/fasttext.py", "--config=configs/ru_lm.py:smoke",
                           f"--config.data.path={corpus}", "--config.data.corpus=wikitext2", "--config.data.cache_dir="
                           f"{tmp_path / 'cache'}", "--config.fasttext.epochs=1", "--config.fasttext.min_count=1",
                           f"--output={output}"], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=root), timeout=300)
  assert result.returncode == 0, result.stderr
  assert f"fasttext corpus: {corpus}/train.txt (the train split" in result.stdout
  assert "w1" in fasttext_vectors.load_vectors(str(output)).key_to_index
