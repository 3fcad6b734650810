"""Quickstart: a small transformer LM on the WikiText-2 copy shipped in the repo.

  python launch/train.py --config=configs/quickstart.py --workdir=runs/quickstart
  python launch/evaluate.py --workdir=runs/quickstart --split=test

Sized for a 2-core CPU and a 10-minute training budget on the standard
33,278-word vocabulary; see BENCHMARKS.md for what it reaches there (the
budget's target is validation perplexity below 300; for scale, the
pytorch/examples default LSTM reaches 467 in the same 10 minutes). Not a
state-of-the-art recipe: configs/wt2_transformer.py is.

Variants: `:smoke` shrinks everything to seconds (tests, notebooks).
"""

from configs import common


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"smoke": True}, __file__)
  config = common.base_config()
  # Most of a small word-level model's compute is the 33k-way softmax, so the
  # body stays narrow and shallow; tied embeddings halve the vocabulary tables.
  config.model.width = 128
  config.model.transformer.num_layers = 2
  config.model.transformer.num_heads = 4
  config.model.transformer.dropout = 0.1
  config.model.transformer.max_length = 64
  config.train.seq_len = 64
  config.train.batch_size = 16
  config.train.steps = 3000
  config.train.max_minutes = 10.0  # the benchmark budget; the schedule still assumes `steps`
  config.train.log_every = 20
  config.train.eval_every = 500
  config.train.eval_tokens = 20000  # the full split is scored by launch/evaluate.py
  config.optim.lr = 3e-3  # small models on little data tolerate a high peak rate
  config.optim.warmup_steps = 100
  if "smoke" in variants:
    common.apply_smoke(config)
    config.train.max_minutes = 0.0
  return common.finish(config)
