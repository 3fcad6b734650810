"""Trains FastText vectors (Facebook .bin) from a config's `fasttext` fields.

  python launch/fasttext.py --config=configs/ru_lm.py --output=/tmp/ruslit.bin

The corpus is `config.fasttext.corpus`: a text file, one sentence per line,
tokens separated by whitespace exactly as the language model tokenises them.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxlm.data import fasttext_vectors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the Facebook .bin file.", required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  fasttext_vectors.train_from_config(config.fasttext, config.fasttext.corpus, _OUTPUT.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
