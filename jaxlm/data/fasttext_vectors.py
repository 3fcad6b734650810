"""FastText vectors: train with gensim, load without pickle, and build initial embedding tables.

Files: Facebook's `.bin` (words and n-gram buckets; read by gensim's
`load_facebook_model`, which parses the binary format) and text `.vec` (words
only). gensim's own `.model` files are pickles, which can run code when loaded,
so they are refused.

Init modes for the input layer (`initial_input_variables`):
  scratch         the model's own random table (a bag still gets its n-gram ids);
  fasttext_words  word rows := fastText's vector of each word it knows;
  fasttext_bag    word rows and n-gram buckets copied, so bag(word) == gensim wv[word];
  fasttext_pieces SentencePiece rows from the n-grams of each piece (see sentencepiece_tokenizer).
"""

import logging
import os
import time
from typing import Any, Sequence

import numpy as np

from jaxlm import errors
from jaxlm.data import subwords, text_files

INIT_MODES = ("scratch", "fasttext_words", "fasttext_bag", "fasttext_pieces")
_LOADABLE = (".bin", ".vec")


# ---------------------------------------------------------------------------- training


def train_fasttext(corpus_path: str, output_path: str, *, sg: bool = True, dim: int = 300,
                   min_n: int = 3, max_n: int = 6, bucket: int = 2_000_000, epochs: int = 5,
                   workers: int = 4, min_count: int = 5, window: int = 5, seed: int = 0,
                   log=print):
  """Trains FastText on a text file of whitespace-separated tokens, one sentence per line.

  Saves Facebook's `.bin` at `output_path` and returns the gensim model. Exactly
  reproducible only with workers=1 (gensim's threads race on shared rows).
  """
  from gensim.models.callbacks import CallbackAny2Vec
  from gensim.models.fasttext import FastText, save_facebook_model

  if not output_path.endswith(".bin"):
    raise errors.ConfigError(f"{output_path}: FastText output must be a Facebook .bin file")
  if not os.path.isfile(corpus_path):
    raise errors.MissingFileError(f"{corpus_path}: FastText corpus not found (a text file, one sentence per line)")

  class EpochLogger(CallbackAny2Vec):
    def on_epoch_begin(self, model):
      self.start = time.time()

    def on_epoch_end(self, model):
      self.epoch = getattr(self, "epoch", 0) + 1
      log(f"fasttext epoch {self.epoch}/{epochs}: {time.time() - self.start:.1f}s, "
          f"vocab {len(model.wv)}, {model.corpus_total_words} words/epoch")

  model = FastText(vector_size=dim, sg=int(sg), min_n=min_n, max_n=max_n, bucket=bucket,
                   window=window, min_count=min_count, workers=workers, seed=seed)
  model.build_vocab(corpus_file=corpus_path)
  model.train(corpus_file=corpus_path, epochs=epochs, total_examples=model.corpus_count,
              total_words=model.corpus_total_words, callbacks=[EpochLogger()])
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  save_facebook_model(model, output_path)
  log(f"fasttext saved {output_path}: {len(model.wv)} words, bucket {bucket}, dim {dim}")
  return model


def write_corpus(path: str, texts) -> int:
  """Writes `texts` (raw strings) as a FastText corpus: each in jaxlm's word tokens
  (works.tokenise_line, as the models read words), one per line, empty ones left out.
  Returns the lines written."""
  from jaxlm.data import works
  lines = [line for line in (works.tokenise_line(text) for text in texts) if line]
  text_files.write_text(path, "\n".join(lines) + "\n")
  return len(lines)


# FastText setting -> the config.model field it must equal, so the vectors fit the model they start.
MODEL_FIELDS = {"dim": "width", "min_n": "min_n", "max_n": "max_n", "bucket": "bucket"}


def train_from_config(fasttext_config, corpus_path: str, output_path: str, log=print, model_config=None):
  """`config.fasttext` fields -> `train_fasttext`; the launcher's one call.

  With `model_config`, dim/min_n/max_n/bucket are taken from model.width/min_n/max_n/bucket
  (a different value in `fasttext_config` is an error), so one source sets both.
  """
  fields = ("sg", "dim", "min_n", "max_n", "bucket", "epochs", "workers", "min_count", "window", "seed")
  settings = {name: fasttext_config[name] for name in fields if name in fasttext_config}
  for name, model_field in MODEL_FIELDS.items() if model_config is not None else ():
    if name in settings and settings[name] != model_config[model_field]:
      raise errors.ConfigError(f"config fasttext.{name}={settings[name]} differs from model.{model_field}="
                               f"{model_config[model_field]}; the vectors must fit the model: drop fasttext.{name}")
    settings[name] = model_config[model_field]
  return train_fasttext(corpus_path, output_path, log=log, **settings)


# ----------------------------------------------------------------------------- loading


def load_vectors(path: str, *, expected_dim: int | None = None):
  """Loads `.bin` (-> gensim FastTextKeyedVectors, with n-grams) or `.vec` (-> KeyedVectors).

  Both results answer `word in vectors.key_to_index`, `vectors[word]` and `vector_size`.
  """
  extension = os.path.splitext(path)[1]
  if extension not in _LOADABLE:
    raise errors.ConfigError(
        f"{path}: refusing to load a {extension or 'extension-less'} file; only Facebook .bin and "
        f"text .vec are read. gensim .model files are pickles that can run code when loaded: "
        f"convert one where it is trusted with gensim.models.fasttext.save_facebook_model(model, 'x.bin')")
  if not os.path.isfile(path):
    raise errors.MissingFileError(f"{path}: FastText file not found; train one with launch/fasttext.py")
  vectors = _load_bin(path) if extension == ".bin" else _load_vec(path)
  if expected_dim is not None and vectors.vector_size != expected_dim:
    raise errors.ConfigError(f"{path}: vectors have dimension {vectors.vector_size}, but the config expects "
                             f"{expected_dim}; set model.width to {vectors.vector_size} or use matching vectors")
  return vectors


def _load_bin(path: str):
  from gensim.models.fasttext import load_facebook_model
  try:
    model = load_facebook_model(path)
  except Exception as error:  # struct/assert/decode errors: the bytes are not a whole model
    # Garbage often reads as a "supervised model" header, hence NotImplementedError too.
    raise errors.DataError(f"{path}: truncated, corrupted or unsupported (e.g. supervised) FastText .bin "
                           f"({type(error).__name__}: {error}); re-download it or retrain it with "
                           f"launch/fasttext.py") from error
  wv = model.wv
  if not (np.isfinite(wv.vectors_vocab).all() and np.isfinite(wv.vectors_ngrams).all()):
    raise errors.DataError(f"{path}: corrupted FastText .bin: vectors hold NaN or inf; "
                           f"re-download it or retrain with launch/fasttext.py")
  return wv


def _load_vec(path: str):
  """Text format: a "count dim" header, then "word v1 ... v_dim" per line."""
  from gensim.models import KeyedVectors

  def corrupted(why):
    return errors.DataError(f"{path}: corrupted or truncated .vec file: {why}")

  with open(path, encoding="utf-8", errors="strict") as file:
    try:
      count, dim = (int(field) for field in file.readline().split())
    except ValueError:
      raise corrupted("the first line must be '<count> <dim>'") from None
    words, rows = [], []
    try:
      for line_number, line in enumerate(file, start=2):
        fields = line.rstrip("\n").rstrip(" ").split(" ")
        if len(fields) != dim + 1:
          raise errors.DataError(f"{path}: line {line_number} has {len(fields) - 1} values, but the header "
                                 f"says dimension {dim}")
        words.append(fields[0])
        rows.append(np.asarray(fields[1:], dtype=np.float32))
    except UnicodeDecodeError as error:
      raise corrupted(f"not UTF-8 ({error})") from error
    except ValueError as error:
      raise (error if path in str(error) else corrupted(error)) from None
  if len(words) != count:
    raise corrupted(f"the header promises {count} words, the file holds {len(words)}")
  vectors = np.stack(rows) if rows else np.zeros((0, dim), np.float32)  # [count, dim]
  if not np.isfinite(vectors).all():
    raise corrupted("vectors hold NaN or inf")
  keyed = KeyedVectors(dim)
  keyed.add_vectors(words, vectors)
  return keyed


# ----------------------------------------------------------------------- initial tables


def _known(words: Sequence[str], vectors, path: str) -> np.ndarray:
  """bool [vocab]: which words the FastText vocabulary holds; none at all is an error."""
  known = np.fromiter((word in vectors.key_to_index for word in words), bool, count=len(words))
  if not known.any():
    raise errors.DataError(f"{path}: no word of the corpus vocabulary ({len(words)} words, e.g. "
                           f"{list(words[:5])}) is in the FastText vocabulary ({len(vectors.key_to_index)} "
                           f"words, e.g. {list(vectors.index_to_key[:5])}); wrong language, casing or "
                           f"tokenisation? Retrain FastText on this corpus with launch/fasttext.py")
  logging.info("%s covers %d of %d vocabulary words (%.1f%%)", path, known.sum(), len(words),
               100 * known.mean())
  return known


def word_rows(table: np.ndarray, words: Sequence[str], vectors, path: str = "vectors") -> np.ndarray:
  """`fasttext_words`: table [>= vocab, width] with row i := vectors[words[i]] for known words.

  For a `.bin` the row is gensim's full word vector (word row and n-grams averaged),
  the best single vector for a word table. Unknown words keep their given rows.
  """
  table = np.array(table, dtype=np.float32)  # a copy: the caller's array stays as it was
  if vectors.vector_size != table.shape[1]:
    raise errors.ConfigError(f"{path}: vectors have dimension {vectors.vector_size}, the model's table "
                             f"has width {table.shape[1]}; set model.width to {vectors.vector_size}")
  known = _known(words, vectors, path)
  indices = [vectors.key_to_index[word] for word, is_known in zip(words, known) if is_known]
  table[np.nonzero(known)[0]] = vectors.vectors[indices]
  return table


def bag_rows(table: np.ndarray, words: Sequence[str], vectors, *, bucket: int, min_n: int,
             max_n: int, path: str = "vectors"):
  """`fasttext_bag`: (table [vocab + bucket, width], ids, mask) with bag(word) == gensim wv[word].

  Known words: own row := fastText's word row (vectors_vocab), plus their n-grams.
  Unknown words: n-grams only, as fastText composes an out-of-vocabulary word; their
  own row (read only by a tied head's `attend`) := that composed vector.
  """
  if not hasattr(vectors, "vectors_ngrams"):
    raise errors.ConfigError(f"{path}: fasttext_bag needs a .bin with n-gram buckets; a .vec holds words only")
  settings = dict(bucket=vectors.bucket, min_n=vectors.min_n, max_n=vectors.max_n)
  wanted = dict(bucket=bucket, min_n=min_n, max_n=max_n)
  if settings != wanted:
    raise errors.ConfigError(f"{path}: FastText was trained with {settings}, the config asks for {wanted}; "
                             f"set the model's bucket/min_n/max_n to the file's")
  vocab = len(words)
  if table.shape != (vocab + bucket, vectors.vector_size):
    raise errors.ConfigError(f"{path}: the model's table is {table.shape}, fasttext_bag needs "
                             f"({vocab} + {bucket}, {vectors.vector_size}); check model.width and bucket")
  known = _known(words, vectors, path)
  table = np.array(table, dtype=np.float32)
  for i in np.nonzero(~known)[0]:
    if len(subwords.ngrams_of(words[i], min_n, max_n)):
      table[i] = vectors[words[i]]  # composed from n-grams; words with none keep their row
  known_rows = [vectors.key_to_index[word] for word, is_known in zip(words, known) if is_known]
  table[np.nonzero(known)[0]] = vectors.vectors_vocab[known_rows]  # raw word rows, not composed
  table[vocab:] = vectors.vectors_ngrams  # [bucket, width]
  ids, mask = subwords.subword_ids(words, min_n=min_n, max_n=max_n, bucket=bucket, has_word_row=known)
  return table, ids, mask


def initial_input_variables(words: Sequence[str], table: np.ndarray, *, input_kind: str,
                            init: str = "scratch", fasttext_path: str = "", bucket: int = 0,
                            min_n: int = 3, max_n: int = 6) -> dict[str, dict[str, Any]]:
  """What to install into the input layer after `model.init` (see `install_input_variables`).

  Args:
    words: the model vocabulary (SentencePiece pieces for `fasttext_pieces`).
    table: the freshly initialised input table, float32 [vocab (+ bucket), width].
    input_kind: "word" (a WordEmbedding) or "bag" (an EmbeddingBag).
  Returns:
    {"params": {"table": ...}} when the table changes, and {"frozen": {"ngram_ids",
    "ngram_mask"}} for a bag: numpy arrays.
  """
  if init not in INIT_MODES:
    raise errors.ConfigError(f"model.init={init!r} is not known; choose one of {list(INIT_MODES)}")
  if input_kind not in ("word", "bag"):
    raise ValueError(f"initial tables exist for inputs 'word' and 'bag', not {input_kind!r}")
  if init == "fasttext_bag" and input_kind != "bag":
    raise errors.ConfigError("model.init='fasttext_bag' needs model.input='bag'")
  table = np.asarray(table, dtype=np.float32)
  result: dict[str, dict[str, Any]] = {}
  ids = mask = None
  if init != "scratch":
    if not fasttext_path:
      raise errors.ConfigError(f"model.init={init!r} needs model.fasttext_path (a .bin or .vec)")
    vectors = load_vectors(fasttext_path, expected_dim=table.shape[1])
    if init == "fasttext_words":
      table = word_rows(table, words, vectors, fasttext_path)
    elif init == "fasttext_pieces":
      from jaxlm.data import sentencepiece_tokenizer
      table = sentencepiece_tokenizer.piece_rows(table, words, vectors, fasttext_path)
    else:
      table, ids, mask = bag_rows(table, words, vectors, bucket=bucket, min_n=min_n, max_n=max_n,
                                  path=fasttext_path)
    result["params"] = {"table": table}
  if input_kind == "bag":
    if ids is None:
      ids, mask = subwords.subword_ids(words, min_n=min_n, max_n=max_n, bucket=bucket)
    result["frozen"] = {"ngram_ids": ids, "ngram_mask": mask}
  return result
