"""Quickstart: a small transformer LM on the WikiText-2 copy shipped in the repo.

  python launch/train.py --config=configs/quickstart.py --workdir=runs/quickstart
  python launch/evaluate.py --workdir=runs/quickstart --split=valid,test

Sized for a 2-core CPU on the standard 33,278-word vocabulary: a 2-layer width-256
transformer, 1,400 steps of 1,024 tokens, about 8.5 minutes of training, so that the
README's first command (install, train, score the whole validation and test splits)
stays within 15 minutes. The output layer is an adaptive softmax
(jaxlm.adaptive_softmax): the exact softmax over all 33,278 words, factorised over
frequency clusters so that rare words' logits are computed only for the tokens that
need them; on 2 CPU cores it trains ~2.6x more tokens per minute than the plain
softmax (`--config.model.head=softmax`), whose elementwise work over 33k logits per
token runs on one core. Measured (BENCHMARKS.md): ~2,650-3,600 tokens/s; these 1,400
steps (7.7 minutes) reach validation perplexity 285.2 / test 263.0 on the whole splits;
with the issue's 10-minute budget (--config.train.steps=1650 --config.train.max_minutes=10)
265.6 / 244.6, against the target of 300 (the plain softmax head reached 434; the
pytorch/examples default LSTM reaches 467 in those 10 minutes). Not a state-of-the-art
recipe: configs/wt2_transformer.py is.

Variants: `:smoke` shrinks everything to seconds (tests, notebooks).
"""

from configs import common


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"smoke": True}, __file__)
  config = common.base_config()
  # Most of a small word-level model's compute is the 33k-way softmax; width 256
  # costs only ~15% more time per token than 128 on 2 CPU cores (bigger matrix
  # products run closer to the CPU's matmul rate) and learns more per token.
  config.model.width = 256
  config.model.transformer.num_layers = 2
  config.model.transformer.num_heads = 4
  config.model.transformer.dropout = 0.0  # under one epoch there is nothing to overfit yet
  config.model.transformer.max_length = 64
  # The same normalised distribution over every word as a softmax, at a fraction of its CPU
  # cost; the cutoffs and capacities in configs/common.py were measured on WikiText-2.
  config.model.head = "adaptive"
  config.train.seq_len = 64
  config.train.batch_size = 16  # 1,024 tokens a step: many small updates beat few large ones here
  config.train.steps = 1400  # ~8.5 minutes at ~2,800 tokens/s on 2 cores; the cosine ends with the budget
  config.train.max_minutes = 9.5  # a hard stop (and checkpoint) for slower machines
  config.train.log_every = 20
  config.train.eval_every = 350
  config.train.eval_tokens = 20_000  # the full splits are scored by launch/evaluate.py
  config.optim.lr = 2e-3  # small models on little data tolerate a high peak rate
  config.optim.warmup_steps = 50
  if "smoke" in variants:
    common.apply_smoke(config)
    config.train.max_minutes = 0.0
  return common.finish(config)
