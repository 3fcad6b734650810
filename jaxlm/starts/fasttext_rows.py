"""The input layer's start from config.model: scratch or FastText tables, and the bag's n-gram ids.

Two moments, so that `experiments.init_state` and `experiments.abstract_state` (the Orbax
restore target) build the same shapes:
  before init   `subword_width(model_config, words)`: the bag's padded ids per word,
                a pure function of the vocabulary and min_n/max_n/bucket (never of a
                FastText file), given to the model as a field;
  after init    `install_from_config(state, model_config, words)`: replaces the
                freshly initialised input table with FastText rows (model.init) and
                fills the bag's frozen n-gram ids; shapes, dtypes and shardings stay.
A resumed or evaluated run restores everything from its checkpoint and never reads
the FastText file again. Scratch tables keep their random values from config.seed.

Scale: FastText's vectors are far larger than a fresh table (skip-gram n-gram rows
have a standard deviation near 1, the scratch init 0.02), which through a tied
softmax head starts the loss far above a uniform guess. `model.fasttext_std` > 0
multiplies every row taken from FastText by one factor so that their standard
deviation is that value: directions and relative norms stay, and the bag then
equals that factor times gensim's wv[word]. 0 keeps FastText's own scale (exact).

  model.init        model.input   table rows
  scratch           word | bag     random (a bag still gets its n-gram ids)
  fasttext_words    word           fastText's vector of each word it knows
  fasttext_bag      bag            word rows and n-gram buckets: bag(word) == gensim wv[word]
  fasttext_pieces   word (bpe)     each SentencePiece piece from its word or n-grams
"""

import jax
import numpy as np

from jaxlm import errors
from jaxlm.data import fasttext_vectors, sentencepiece_tokenizer, subwords
from jaxlm.models import embedding_bag

_INPUT_SCOPE = "input_layer"
_NEEDS_INPUT = {"fasttext_words": "word", "fasttext_bag": "bag", "fasttext_pieces": "word"}


def check_config(model_config) -> None:
  """Fails at start-up (before the corpus is prepared) on an impossible input start."""
  init = model_config.init
  if init not in fasttext_vectors.INIT_MODES:
    raise errors.ConfigError(f"config model.init={init!r} is not known; choose one of "
                             f"{list(fasttext_vectors.INIT_MODES)}")
  if init == "scratch":
    return
  if model_config.input != _NEEDS_INPUT[init]:
    raise errors.ConfigError(f"config model.init={init!r} needs model.input={_NEEDS_INPUT[init]!r}, "
                             f"not {model_config.input!r}")
  if not model_config.fasttext_path:
    raise errors.ConfigError(f"config model.init={init!r} needs model.fasttext_path (a FastText .bin, or a .vec "
                             f"for fasttext_words/pieces); train one with launch/fasttext.py, or set "
                             f"model.init='scratch'")


def _subword_ids(model_config, words):
  return subwords.subword_ids(words, min_n=model_config.min_n, max_n=model_config.max_n,
                              bucket=model_config.bucket)


def subword_width(model_config, words) -> int:
  """The bag's ids per word (own row + n-grams), padded; 1 for other inputs.

  With every word's own row counted, this bounds fasttext_bag's ids too (words that
  FastText does not know drop their own row), so the width never depends on the file.
  """
  if model_config.input != "bag":
    return 1
  return int(_subword_ids(model_config, words)[0].shape[1])


def _pad_columns(array: np.ndarray, width: int, what: str) -> np.ndarray:
  if array.shape[1] > width:
    raise ValueError(f"{what} has {array.shape[1]} ids per word, the model was built for {width}; "
                     f"build the model with subword_width(model_config, words)")
  return np.pad(array, ((0, 0), (0, width - array.shape[1])))


def _rescale(new: np.ndarray, old: np.ndarray, std: float) -> np.ndarray:
  """The rows of `new` that FastText gave (those that differ from `old`), scaled to `std`."""
  from_fasttext = np.any(new != old, axis=1)  # [rows]
  factor = std / max(float(new[from_fasttext].std()), 1e-12)
  new = new.copy()
  new[from_fasttext] *= factor
  return new


def install_from_config(state, model_config, words):
  """Returns `state` with the input layer's initial arrays installed (see the module docstring).

  state: a freshly initialised experiments.TrainState (params and frozen collections).
  words: the model vocabulary, index = token id (SentencePiece pieces for fasttext_pieces).
  The optimiser state is left as it is: optax builds it from shapes (zeros), not values.
  """
  check_config(model_config)
  init, kind = model_config.init, model_config.input
  if init == "scratch" and kind != "bag":
    return state
  if init == "fasttext_pieces" and not any(word.startswith(sentencepiece_tokenizer.WORD_START) for word in words):
    raise errors.ConfigError("config model.init='fasttext_pieces' needs a SentencePiece vocabulary: set "
                             "data.tokenizer='bpe' (a language model) or task.tokenizer='bpe' (a fine-tuning task), "
                             "or use fasttext_words for a word vocabulary")
  table = np.asarray(jax.device_get(state.params[_INPUT_SCOPE]["table"]))
  arrays = fasttext_vectors.initial_input_variables(
      words, table, input_kind=kind, init=init, fasttext_path=model_config.fasttext_path,
      bucket=model_config.bucket, min_n=model_config.min_n, max_n=model_config.max_n)
  if "params" in arrays and model_config.fasttext_std > 0:
    arrays["params"]["table"] = _rescale(arrays["params"]["table"], table, model_config.fasttext_std)
  if embedding_bag.FROZEN in arrays:
    declared = state.frozen[embedding_bag.FROZEN][_INPUT_SCOPE]["ngram_ids"].shape[1]
    arrays[embedding_bag.FROZEN] = {name: _pad_columns(value, declared, f"bag {name}")
                                    for name, value in arrays[embedding_bag.FROZEN].items()}
  variables = embedding_bag.install_input_variables({"params": state.params, **state.frozen}, arrays,
                                                    scope=_INPUT_SCOPE)
  old = {"params": state.params, **state.frozen}

  def place(new, previous):  # same shape, dtype and sharding as init gave
    if new.shape != previous.shape:
      raise ValueError(f"initial input array {new.shape} does not fit the model's {previous.shape}")
    return jax.device_put(new, previous.sharding)

  placed = jax.tree.map(place, variables, old)
  params = placed.pop("params")
  return state.replace(params=params, frozen=placed)
