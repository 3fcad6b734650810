"""What a run starts from, besides a model's own initialisation.

  fasttext_rows.py          FastText vectors (and a bag's n-gram buckets) as the input layer's rows
  target_vectors.py         an embedding head's fixed table of target vectors
  pretrained_checkpoint.py  a pre-trained workdir's input layer and body (config.init.checkpoint)
"""

from jaxlm.starts import fasttext_rows, pretrained_checkpoint, target_vectors


def apply(state, config, words):
  """The state with the run's starts applied, in order: an embedding head's fixed target table
  (config.model.target_vectors), the input layer's FastText rows and a bag's n-gram ids
  (config.model.init), then a pre-trained run's input layer and body (config.init.checkpoint).
  words: the task's vocabulary, in id order. Shapes and shardings stay the state's."""
  state = target_vectors.install_from_config(state, config.model, words)
  state = fasttext_rows.install_from_config(state, config.model, words)
  if config.init.checkpoint:
    state = pretrained_checkpoint.install(state, config.init.checkpoint)
  return state
