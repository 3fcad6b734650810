"""Output heads and what reads their outputs: body states -> logits, vectors or spans.

  language_model.py   a language model's heads: softmax, adaptive softmax, embedding (cosine/L2/vMF)
  losses.py           their losses as sums plus counts, by head name
  adaptive_softmax.py the adaptive softmax's clusters, loss and log-probabilities
  vmf.py              the von Mises-Fisher normaliser
  decoding.py         next-token ranking for every language-model head (accuracy, generation)
  task_heads.py       the fine-tuning heads: classification, tagging, span QA
"""
