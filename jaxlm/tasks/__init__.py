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


def build_task(config) -> base.Task:
  """Builds the task named by config.task.name, reading its data from local files."""
  name = task_name(config)
  if name not in TASKS:
    raise errors.ConfigError(f"config task.name={name!r} is not known; choose one of {sorted(TASKS)}")
  return TASKS[name](config)
