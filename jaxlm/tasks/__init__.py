"""Tasks by name: what the one loop trains and evaluates (jaxlm/tasks/base.py is the contract).

`config.task.name` picks one from TASKS. Adding a task is one module and one line here.
"""

from jaxlm import errors
from jaxlm.tasks import base, causal_lm, classification, masked_lm, squad, tagging

TASKS = {
    "causal_lm": causal_lm.CausalLM,
    "masked_lm": masked_lm.MaskedLM,  # BERT's objective on the causal LM's corpora (an encoder body)
    "classification": classification.Classification,  # CSV / TSV sentences -> one label
    "tagging": tagging.Tagging,  # CoNLL-U words -> UPOS tags
    "squad": squad.SpanQA,  # SQuAD v1.1 JSON questions -> answer spans in the context
}


def task_name(config) -> str:
  return config.task.name


def build_task(config, *, sentencepiece_model: str = "") -> base.Task:
  """Builds the task named by config.task.name, reading its data from local files.

  sentencepiece_model: a ready .model for a language model's data.tokenizer="bpe" corpus (a
  workdir's own copy), read instead of the corpus cache's; a fine-tuning task's is
  config.task.sentencepiece_model.
  """
  name = task_name(config)
  if name not in TASKS:
    raise errors.ConfigError(f"config task.name={name!r} is not known; choose one of {sorted(TASKS)}")
  if sentencepiece_model:  # only the tasks that read config.data (causal_lm, masked_lm) take one
    return TASKS[name](config, sentencepiece_model=sentencepiece_model)
  return TASKS[name](config)
