"""Shared config pieces: the defaults every experiment family starts from.

A config file imports `base_config()`, states only its deltas (each with a
reason), and returns `finish(config)`, which locks it so that a misspelled key
fails at start-up. Variants are `--config=configs/x.py:smoke` or
`--config=configs/x.py:model=lstm,smoke`, parsed by `parse_variants`.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.corpus = "wikitext2"  # a name in jaxlm.data.corpora.CORPORA
  config.data.path = ""  # folder with the corpus files; "" = the copy shipped in the repo
  config.data.cache_dir = ""  # TFDS + token cache; "" = $JAXLM_CACHE or ~/.cache/jaxlm
  config.data.batching = "windows"  # "windows": random offsets; "stream": contiguous (state carried)

  config.model = ml_collections.ConfigDict()
  config.model.family = "transformer"  # a key of jaxlm.models.BODIES
  config.model.input = "word"  # a key of jaxlm.models.INPUT_LAYERS
  config.model.head = "softmax"  # a key of jaxlm.models.HEADS (and jaxlm.losses.LOSSES)
  config.model.width = 128
  config.model.tie_embeddings = True
  config.model.compute_dtype = "float32"  # parameters stay float32; logits and losses float32
  config.model.embedding_dropout = 0.0  # drop whole word types per step (any input layer, any body)
  config.model.transformer = ml_collections.ConfigDict(dict(
      num_layers=2, num_heads=4, mlp_ratio=4, dropout=0.1, positions="learned", max_length=128))

  config.optim = ml_collections.ConfigDict()
  config.optim.name = "adamw"  # adamw | adam_l2 | sgd
  config.optim.lr = 1e-3
  config.optim.b1 = 0.9
  config.optim.b2 = 0.99
  config.optim.eps = 1e-8
  config.optim.momentum = 0.0  # sgd only
  config.optim.weight_decay = 0.01
  config.optim.clip_norm = 1.0  # 0 disables clipping
  config.optim.schedule = "cosine"  # constant | cosine | linear | rsqrt
  config.optim.warmup_steps = 100
  config.optim.final_lr_fraction = 0.1

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32  # global, over all devices and hosts
  config.train.seq_len = 128
  config.train.steps = 1000
  config.train.max_minutes = 0.0  # wall-clock budget; stops (and checkpoints) early; 0 = none
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.eval_tokens = 0  # validation tokens scored during training; 0 = the whole split
  config.train.eval_batch_size = 16
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 2  # the last N, plus the best by validation perplexity
  return config


def parse_variants(arg: str | None) -> dict:
  """'model=lstm,smoke' -> {'model': 'lstm', 'smoke': True}."""
  variants = {}
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    key, _, value = part.partition("=")
    variants[key] = value if value else True
  return variants


def check_variants(variants: dict, allowed: dict, config_file: str) -> None:
  """Unknown variant names or values are an error, never ignored."""
  for key, value in variants.items():
    if key not in allowed:
      raise ValueError(f"{config_file}: unknown variant {key!r}; known variants: {sorted(allowed)}")
    choices = allowed[key]
    if choices is not True and value not in choices:
      raise ValueError(f"{config_file}: variant {key}={value!r} not in {sorted(choices)}")


def apply_smoke(config: ml_collections.ConfigDict) -> None:
  """Shrinks any config to seconds on a CPU: used by tests and notebooks."""
  config.model.width = 32
  family = config.model.family
  body = config.model[family]
  for key, value in (("num_layers", 1), ("num_heads", 2), ("max_length", 16)):
    if key in body:
      body[key] = value
  config.train.batch_size = 8
  config.train.seq_len = 16
  config.train.steps = 6
  config.train.log_every = 2
  config.train.eval_every = 3
  config.train.checkpoint_every = 3
  config.train.eval_tokens = 512
  config.train.eval_batch_size = 4
  config.optim.warmup_steps = 2


def finish(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config.lock()
  return config
