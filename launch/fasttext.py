"""Trains FastText vectors (Facebook .bin) from a config's `fasttext` fields.

  python launch/fasttext.py --config=configs/ru_lm.py --output=runs/ru_lm/fasttext.bin \
      --config.data.path=../shared/data/ruslit

The corpus is `config.fasttext.corpus`: a text file, one sentence per line, tokens
separated by whitespace exactly as the language model tokenises them. Left empty
(""), it is the train split of the config's own corpus (`config.data`) in the
language model's word-level tokenisation, written once to the cache dir, so the
vectors' words are the model's words (and the pieces' words, for data.tokenizer=bpe).
When the config has a `model`, the vectors' dimension, min_n, max_n and bucket are
model.width, model.min_n, model.max_n and model.bucket.

A fine-tuning config (one with a `task`, e.g. configs/finetune.py:task=squad_en) trains on
the task's training texts (never its evaluation splits) plus the files of
`config.fasttext.texts` (paths relative to the repository root, .xz read as text), all in
jaxlm's word tokens, written to <output>.corpus.txt beside the vectors:

  python launch/fasttext.py --config=configs/finetune.py:task=squad_en \
      --config.task.path=../shared/data/squad --output=runs/squad_en/fasttext.bin
"""

import os


import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
from absl import app, flags
from ml_collections import config_flags

from jaxlm import errors
from jaxlm.data import fasttext_vectors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the Facebook .bin file.", required=True)


@errors.one_line("launch/fasttext.py")
def main(argv):
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if "fasttext" not in config:
    raise errors.ConfigError("the config has no `fasttext` section (its training settings); use one that does, "
                             "e.g. --config=configs/ru_lm.py, configs/wt2_heads.py or configs/wt2_mlm.py")
  corpus = config.fasttext.get("corpus", "")
  # A language model's config reads a corpus (its `data` section); a fine-tuning config has none
  # and gives its task's training texts. Every config has a `task` section.
  if not corpus and "data" not in config:
    corpus = _task_corpus(config, _OUTPUT.value)
  elif not corpus:
    from jaxlm.data import corpora
    corpus = corpora.train_text_file(config.data)
    print(f"fasttext corpus: {corpus} (the train split of data.corpus={config.data.corpus!r})")
  fasttext_vectors.train_from_config(config.fasttext, corpus, _OUTPUT.value,
                                     model_config=config.model if "model" in config else None)


def _task_corpus(config, output: str) -> str:
  """Writes the fine-tuning task's training texts and config.fasttext.texts' lines as one corpus file."""
  from jaxlm.data import fasttext_vectors, text_files
  from jaxlm.tasks import build_task
  texts = build_task(config).training_texts()
  print(f"fasttext corpus: {len(texts)} training texts of task {config.task.name!r}")
  for name in config.fasttext.get("texts", ()):
    path = name if os.path.isabs(name) else os.path.join(_path.ROOT, name)
    lines = text_files.read_lines(path)
    print(f"fasttext corpus: {len(lines)} lines of {path}")
    texts += lines
  corpus = os.path.splitext(output)[0] + ".corpus.txt"
  written = fasttext_vectors.write_corpus(corpus, texts)
  print(f"fasttext corpus: {written} lines written to {corpus}")
  return corpus


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=_config_flags.parse_flags("launch/fasttext.py"))
