"""Fixed target vectors for the embedding heads (cosine, L2, vMF): one FastText row per word.

`EmbeddingHead` keeps its table [vocab, target_dim] in the "frozen" variable collection,
zeros after `model.init`. `install_from_config` replaces it with the same shape, dtype and
sharding after `experiments.init_state`, so `experiments.abstract_state` (the Orbax restore target) is
unchanged and a resumed run reads the table from its checkpoint.

Rows are stored as FastText gives them (or, with model.center_targets, as unit rows minus
their mean: `center`), not normalised: every embedding loss unit-normalises
the target it gathers (jaxlm.models.heads.embedding) and nearest-neighbour ranking normalises the table
(jaxlm.models.heads.ranking), so one table serves every head.

The row of vocabulary word w:
  w in the FastText vocabulary:         its word vector (for a .bin, gensim's wv[w], the word
                                        row averaged with its n-grams, as FastText reports it);
  else, a .bin and w has n-grams:       the vector composed from its n-gram buckets, as
                                        FastText gives an out-of-vocabulary word;
  else (a .vec, or no n-grams at all):  a random direction drawn from a fixed seed, so the word
                                        is still a distinct, decodable target (a zero row would
                                        give it no direction: the loss could not train towards
                                        it and decoding could never return it).
"""

import logging
from typing import Sequence

import jax
import numpy as np

from jaxlm import errors
from jaxlm.data import fasttext_vectors

_TABLE_PATH = ("frozen", "head", "target_table")  # inside TrainState.frozen


def target_table(words: Sequence[str], path: str, dim: int, *, seed: int = 0) -> np.ndarray:
  """float32 [len(words), dim]: the FastText vector of each word (see the module docstring)."""
  vectors = fasttext_vectors.load_vectors(path)
  if vectors.vector_size != dim:
    raise errors.ConfigError(f"{path}: vectors have dimension {vectors.vector_size}, but model.target_dim is {dim}; "
                             f"set model.target_dim={vectors.vector_size} or train FastText with fasttext.dim={dim}")
  known = np.fromiter((word in vectors.key_to_index for word in words), bool, count=len(words))
  table = np.zeros((len(words), dim), np.float32)
  if known.any():
    table[known] = np.stack([vectors[word] for word, is_known in zip(words, known) if is_known])
  composed = np.zeros(len(words), bool)
  if hasattr(vectors, "vectors_ngrams"):  # a .bin: compose the others from their n-grams
    for index in np.nonzero(~known)[0]:
      table[index] = vectors[words[index]]  # gensim gives zeros to a word without n-grams
      composed[index] = np.any(table[index] != 0.0)
  missing = ~known & ~composed
  if known.sum() + composed.sum() == 0:
    raise errors.DataError(f"{path}: no word of the corpus vocabulary ({len(words)} words, e.g. {list(words[:5])}) "
                           f"has a FastText vector; wrong language, casing or tokenisation? Train FastText on "
                           f"this corpus with launch/fasttext.py")
  if missing.any():
    typical_norm = float(np.median(np.linalg.norm(table[~missing], axis=-1)))
    directions = np.random.default_rng(seed).standard_normal((int(missing.sum()), dim)).astype(np.float32)
    table[missing] = typical_norm * directions / np.linalg.norm(directions, axis=-1, keepdims=True)
  logging.info("%s: target vectors for %d words: %d FastText words, %d composed from n-grams, %d random",
               path, len(words), known.sum(), composed.sum(), missing.sum())
  return table


def center(table: np.ndarray) -> np.ndarray:
  """Unit rows minus their mean: float32 [vocab, dim].

  FastText spaces share a common direction, and a predicted vector (roughly the mean of the
  plausible next words' directions) lands nearest to a few "hub" words close to that common
  direction: on WikiText-2 a vMF head's top-1 neighbour was the rare word "IR8" for 68% of
  tokens and its accuracy 0, though its cosine to the target averaged 0.63. Removing the
  mean direction (Mu & Viswanath, 2018, "All-but-the-top") spreads the targets out.
  """
  norms = np.maximum(np.linalg.norm(table, axis=-1, keepdims=True), 1e-8)
  unit = table / norms
  return (unit - unit.mean(axis=0, keepdims=True)).astype(np.float32)


def has_target_table(state) -> bool:
  node = state.frozen
  for key in _TABLE_PATH:
    if not isinstance(node, dict) or key not in node:
      return False
    node = node[key]
  return True


def install(state, table: np.ndarray):
  """Returns `state` with its target table replaced by `table` (same shape; sharding kept)."""
  old = state.frozen[_TABLE_PATH[0]][_TABLE_PATH[1]][_TABLE_PATH[2]]
  if tuple(table.shape) != tuple(old.shape):
    raise ValueError(f"target table {table.shape} does not fit the head's {tuple(old.shape)} "
                     f"([vocab, model.target_dim])")
  new = jax.device_put(np.asarray(table, old.dtype), old.sharding)
  head = {**state.frozen[_TABLE_PATH[0]][_TABLE_PATH[1]], _TABLE_PATH[2]: new}
  collection = {**state.frozen[_TABLE_PATH[0]], _TABLE_PATH[1]: head}
  return state.replace(frozen={**state.frozen, _TABLE_PATH[0]: collection})


def install_from_config(state, model_config, words: Sequence[str]):
  """Fills the target table from `model_config.target_vectors`; a no-op for a softmax head."""
  if not has_target_table(state):
    return state
  path = model_config.target_vectors
  if not path:
    raise errors.ConfigError(f"config model.head={model_config.head!r} predicts vectors and needs "
                             f"model.target_vectors: a FastText .bin or .vec of dimension model.target_dim="
                             f"{model_config.target_dim} (train one with launch/fasttext.py)")
  table = target_table(words, path, model_config.target_dim)
  return install(state, center(table) if model_config.center_targets else table)
