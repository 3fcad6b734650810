"""FastText n-grams and hashes against gensim's own functions; the EmbeddingBag's gather + mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gensim.models.fasttext import ft_ngram_hashes
from gensim.models.fasttext_inner import compute_ngrams, compute_ngrams_bytes, ft_hash_bytes

from jaxlm.data import subwords
from jaxlm.models import embedding_bag

WORDS = ["ёжик", "naïve", "кот🙂", "🙂", "a", "", "слово", "hello", "aaaaa", "日本語", "ß<>"]
RANGES = [(3, 6), (1, 3), (1, 1), (2, 2), (5, 4), (2, 30)]


@pytest.mark.parametrize("min_n,max_n", RANGES)
def test_ngrams_and_buckets_match_gensim(min_n, max_n):
  for word in WORDS:
    ngrams = subwords.ngrams_of(word, min_n, max_n)
    assert ngrams == compute_ngrams_bytes(word, min_n, max_n), word
    assert subwords.ngram_buckets(word, min_n, max_n, 2000).tolist() == \
        ft_ngram_hashes(word, min_n, max_n, 2000), word


def test_ngrams_follow_fasttext_rules():
  # The whole "<ab>" is an n-gram when in range; lone "<" and ">" never are.
  assert subwords.ngrams_of("ab", 1, 4) == [b"<a", b"<ab", b"<ab>", b"a", b"ab", b"ab>", b"b", b"b>"]
  # gensim's str-level compute_ngrams keeps the lone boundaries; fastText (and we) do not.
  assert b"<" not in subwords.ngrams_of("ab", 1, 1) and "<" in compute_ngrams("ab", 1, 1)
  # Character boundaries, not bytes: "ёж" is 2 characters, 4 bytes.
  assert subwords.ngrams_of("ёж", 4, 4) == ["<ёж>".encode()]


def test_fnv1a_sign_extends_bytes():
  assert subwords.fnv1a_hashes([b"a"]).tolist() == [0xE40C292C]  # the published FNV-1a("a")
  samples = [word.encode() for word in WORDS] + [bytes(range(256))]
  assert subwords.fnv1a_hashes(samples).tolist() == [ft_hash_bytes(sample) for sample in samples]
  # Unsigned bytes would give a different hash for Cyrillic: the sign extension matters.
  unsigned = 2166136261
  for byte in "ж".encode():
    unsigned = ((unsigned ^ byte) * 16777619) & 0xFFFFFFFF
  assert subwords.fnv1a_hashes(["ж".encode()])[0] != unsigned


def test_subword_ids_layout():
  words = ["aaaaa", "ёжик", "x"]
  ids, mask = subwords.subword_ids(words, min_n=2, max_n=2, bucket=50, has_word_row=[True, False, True])
  assert ids.dtype == np.int32 and mask.shape == ids.shape
  vocab = len(words)
  for index, word in enumerate(words):
    expected = ([index] if index != 1 else []) + \
        [vocab + bucket for bucket in ft_ngram_hashes(word, 2, 2, 50)]
    assert ids[index][mask[index]].tolist() == expected
    assert (ids[index][~mask[index]] == 0).all()
  # Duplicated n-grams count each time: "aa" appears 4 times in "<aaaaa>".
  aa_row = vocab + subwords.ngram_buckets("aa", 2, 2, 50)[1]  # n-grams of "<aa>": "<a", "aa", "a>"
  assert (ids[0][mask[0]] == aa_row).sum() == 4


def test_subword_ids_without_buckets_is_a_word_table():
  ids, mask = subwords.subword_ids(["a", "bc"], min_n=3, max_n=6, bucket=0)
  assert ids.tolist() == [[0], [1]] and mask.all()


def _bag(vocab_size=3, bucket=7, width=4, dtype=jnp.float32):
  module = embedding_bag.EmbeddingBag(vocab_size=vocab_size, width=width, bucket=bucket, dtype=dtype)
  token_ids = jnp.array([[0, 1, 2, 1]])  # [batch=1, length=4]
  variables = module.init(jax.random.key(0), token_ids, train=False)
  return module, token_ids, variables


def test_bag_placeholder_is_word_rows():
  module, token_ids, variables = _bag()
  table = variables["params"]["table"]  # [3 + 7, 4]
  out = module.apply(variables, token_ids, train=True)
  np.testing.assert_allclose(out[0], table[np.array([0, 1, 2, 1])], rtol=1e-6)
  logits = module.apply(variables, out, method=module.attend)
  assert logits.shape == (1, 4, 3) and logits.dtype == jnp.float32


def test_bag_is_masked_mean_and_installs():
  module, token_ids, variables = _bag(dtype=jnp.bfloat16)
  table = np.arange(40, dtype=np.float32).reshape(10, 4)
  ids = np.array([[0, 3, 3, 0], [4, 5, 0, 0], [0, 0, 0, 0]], np.int32)  # word 1: n-grams only
  mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool)  # word 2: empty bag
  wrapped = {collection: {"input_layer": tree} for collection, tree in variables.items()}
  wrapped = embedding_bag.install_input_variables(
      wrapped, {"params": {"table": table}, "frozen": {"ngram_ids": ids, "ngram_mask": mask}})
  installed = {collection: tree["input_layer"] for collection, tree in wrapped.items()}
  out = jax.jit(lambda v, t: module.apply(v, t, train=False))(installed, token_ids)
  assert out.dtype == jnp.bfloat16 and out.shape == (1, 4, 4)
  expected = [(table[0] + 2 * table[3]) / 3, (table[4] + table[5]) / 2, np.zeros(4)]
  np.testing.assert_allclose(np.asarray(out[0], np.float32), np.stack([expected[i] for i in [0, 1, 2, 1]]),
                             rtol=1e-2)
  with pytest.raises(ValueError, match="shape"):
    embedding_bag.install_input_variables(wrapped, {"params": {"table": table[:5]}})
