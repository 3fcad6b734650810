"""TFDS builder for word-level corpora in the WikiText / PTB format.

One example per line of the source file, in file order (shuffling disabled, since
language-model streams depend on order), stored as array_record and read back
with `as_data_source()` (random access, no TensorFlow).
"""

import tensorflow_datasets as tfds

from jaxlm.data import text_files


class WordLevelCorpus(tfds.core.GeneratorBasedBuilder):
  """Builds splits from local files; `split_files` maps split name -> file path."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, split_files: dict[str, str], **kwargs):
    self._split_files = split_files
    super().__init__(**kwargs)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="Word-level language-modelling corpus read from local files, one example per line.",
        features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded: the files are local
    return {split: self._generate_examples(path) for split, path in self._split_files.items()}

  def _generate_examples(self, path):
    for line_number, line in enumerate(text_files.read_lines(path)):
      yield line_number, {"text": line}
