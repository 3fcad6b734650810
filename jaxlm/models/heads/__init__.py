"""Output heads: body states -> what a loss reads, one module per head.

  contract.py          LanguageModelHead: what every language-model head gives (module, loss,
                       ranks, next-token scores), one record per head
  softmax.py           logits over the vocabulary; the one cross-entropy
  adaptive_softmax.py  the same distribution factorised over frequency clusters
  embedding.py         a vector in a fixed FastText space, with a cosine, L2 or vMF loss
  vmf.py               the von Mises-Fisher normaliser the vMF loss needs
  ranking.py           words ranked by score or by cosine; top-1 / top-5 accuracy
  classification.py    a fine-tuning task's heads, each with its loss: pooled class logits,
  tagging.py           tag logits at every position,
  span.py              extractive QA's start and end logits

A language-model head is registered once, in LANGUAGE_MODEL_HEADS, under the config's
model.head name; a new one is its module (ending in a LanguageModelHead record) plus one
line here. A fine-tuning task builds its own head and passes it to jaxlm.models.build_model
in place of a language-model head, so its config has no language-model head keys.
"""

from jaxlm import errors
from jaxlm.models.heads import adaptive_softmax, contract, embedding, softmax

LANGUAGE_MODEL_HEADS = {
    "softmax": softmax.HEAD,
    # The same exact distribution, factorised over frequency clusters: cheaper to train.
    "adaptive": adaptive_softmax.HEAD,
    # Predict a vector in the fixed FastText space, trained by the named objective.
    "cosine": embedding.COSINE,
    "l2": embedding.L2,
    "vmf": embedding.VMF,
}

# The model config keys that only a language-model head reads: a fine-tuning config, whose
# task brings its own head, leaves them out (configs/finetune.py).
LANGUAGE_MODEL_HEAD_KEYS = ("head", "tie_embeddings", "output_bias", "target_dim", "target_vectors", "center_targets",
                            "adaptive_cutoffs", "adaptive_capacities", "vmf_lambda1", "vmf_lambda2")


def language_model_head(model_config) -> contract.LanguageModelHead:
  """The record of the head named by model_config.head; a clear error for an unknown name or a
  config without one (a fine-tuning config, whose task brings its own head)."""
  name = model_config.get("head")
  if name is None:
    raise errors.ConfigError("config model.head is missing: a language model names its head "
                             f"(one of {sorted(LANGUAGE_MODEL_HEADS)}); a fine-tuning task brings its own")
  if name not in LANGUAGE_MODEL_HEADS:
    raise errors.ConfigError(f"config model.head={name!r} is not known; choose one of {sorted(LANGUAGE_MODEL_HEADS)}")
  return LANGUAGE_MODEL_HEADS[name]
