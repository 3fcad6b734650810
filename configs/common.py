"""Shared config pieces: the defaults every experiment family starts from.

A config file imports `base_config()`, states only its deltas (each with a
reason), and returns `finish(config)`, which locks it so that a misspelled key
fails at start-up. Variants are `--config=configs/x.py:smoke` or
`--config=configs/x.py:model=lstm,smoke`, parsed by `parse_variants`.
"""

import copy

import ml_collections

from jaxlm import errors, tasks
from jaxlm.models import heads


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # What is trained and scored (jaxlm.tasks): causal_lm | masked_lm read config.data;
  # fine-tuning tasks get their own keys from use_task below.
  config.task = ml_collections.ConfigDict(dict(name="causal_lm"))
  # Fine-tuning start: "<workdir>[:best|:<step>]" of a pre-trained run; its input layer and
  # body (and vocabulary) replace the fresh ones (jaxlm.starts.pretrained_checkpoint). "" = none.
  config.init = ml_collections.ConfigDict(dict(checkpoint=""))

  config.data = ml_collections.ConfigDict()
  config.data.corpus = "wikitext2"  # a name in jaxlm.data.corpora.CORPORA
  config.data.path = ""  # folder with the corpus files; "" = the copy shipped in the repo
  config.data.cache_dir = ""  # TFDS + token cache; "" = $JAXLM_CACHE or ~/.cache/jaxlm
  config.data.batching = "windows"  # "windows": random offsets; "stream": contiguous (state carried)
  # "word": the corpus's words are the LM vocabulary; "bpe": SentencePiece BPE trained on the
  # train split's word-tokenised text (cached), and the LM vocabulary is its pieces.
  config.data.tokenizer = "word"
  config.data.max_vocab = 0  # word: keep the most frequent N train words, the rest -> <unk>; 0 = all
  config.data.bpe_vocab_size = 16000  # bpe: the number of pieces

  config.model = ml_collections.ConfigDict()
  config.model.family = "transformer"  # a key of jaxlm.models.BODIES
  config.model.input = "word"  # a key of jaxlm.models.INPUT_LAYERS
  config.model.head = "softmax"  # a key of jaxlm.models.heads.LANGUAGE_MODEL_HEADS
  # Embedding heads (cosine | l2 | vmf) predict a target_dim vector trained against each
  # target word's fixed FastText vector, read from `target_vectors` (a .bin or .vec of that
  # dimension; required for those heads, unused by softmax).
  config.model.target_dim = 300
  # head="adaptive" (jaxlm.models.heads.adaptive_softmax): the exact softmax factorised at these word ranks
  # (a head of the most frequent words, then tail clusters), and per tail cluster the
  # fraction of a device's tokens training gathers for it (a batch with more falls back to
  # scoring every token for that cluster: same loss, slower). Defaults fit WikiText-2.
  config.model.adaptive_cutoffs = (2000, 6000, 14000)
  config.model.adaptive_capacities = (0.16, 0.11, 0.08)
  config.model.target_vectors = ""
  # Unit-normalise the target vectors and subtract their mean direction, so predictions do
  # not decode to a few "hub" words near FastText's common direction (jaxlm.starts.target_vectors.center).
  config.model.center_targets = False
  # vMF regularisers (Kumar & Tsvetkov, 2019): loss = -log C_m(|e|) - lambda2 e.t + lambda1 |e|;
  # 0 / 1 is plain NLLvMF, their regularised variants use lambda1=0.02 or lambda2=0.1.
  config.model.vmf_lambda1 = 0.0
  config.model.vmf_lambda2 = 1.0
  config.model.width = 128
  config.model.tie_embeddings = True
  config.model.output_bias = True  # softmax and adaptive heads: a bias per word (GPT-2 has none)
  config.model.compute_dtype = "float32"  # parameters stay float32; logits and losses float32
  config.model.embedding_dropout = 0.0  # drop whole word types per step (any input layer, any body)
  # Rematerialisation per body layer (a transformer block, an LSTM layer, a TCN block): "none"
  # keeps every activation for the backward pass; "full" keeps only each layer's input and
  # recomputes the rest (least memory, ~1 more forward pass); "dots_saveable" and
  # "dots_with_no_batch_dims_saveable" keep matmul outputs (jax.checkpoint_policies). Same
  # gradients and parameter tree either way (jaxlm.models.layers.REMAT_POLICIES). XLA:CPU saves
  # memory with it only under XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false
  # (BENCHMARKS.md, "Memory and speed").
  config.model.remat = "none"
  # Input start (jaxlm.starts.fasttext_rows): scratch | fasttext_words (word rows) | fasttext_bag (word rows
  # and n-gram buckets; input="bag") | fasttext_pieces (SentencePiece rows; data.tokenizer="bpe",
  # or a fine-tuning task's task.tokenizer="bpe").
  config.model.init = "scratch"
  config.model.fasttext_path = ""  # a Facebook .bin (or words-only .vec) of dimension model.width
  # > 0: FastText rows scaled by one factor to this standard deviation (0.02 = the scratch init's),
  # so a tied head starts at the scratch loss; 0: FastText's own scale, bag(word) == wv[word] exactly.
  config.model.fasttext_std = 0.0
  config.model.freeze_embeddings = False  # the input table (tied: the output too) gets no update
  config.model.embedding_lr_multiplier = 1.0  # the input table's learning rate = lr * this
  # input="bag": FastText's n-gram settings; must equal the .bin's for fasttext_bag. These are
  # fastText's defaults; small configs shrink the bucket (the table is [vocab + bucket, width]).
  config.model.bucket = 2_000_000
  config.model.min_n = 3
  config.model.max_n = 6
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
  # How the input layer's tables are updated (jaxlm.training.optim): "dense", every row every step;
  # "lazy", only the rows the step's batch reads (lazy AdamW), so a step costs the rows it uses
  # rather than the table's size. A tied softmax or adaptive head reads every word row: with the bag
  # input its word rows are then updated at every step and only its n-gram buckets lazily; a word
  # table under a tied head needs "dense".
  config.optim.embedding_updates = "dense"
  config.optim.schedule = "cosine"  # constant | cosine | linear | rsqrt
  config.optim.warmup_steps = 100
  config.optim.final_lr_fraction = 0.1
  # Fine-tuning: the encoder's (input layer and body) learning rate = lr * this; the head's = lr.
  config.optim.encoder_lr_multiplier = 1.0
  config.optim.freeze_encoder_steps = 0  # K > 0: encoder frozen for the first K steps; -1: always; 0: never

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 32  # global, over all devices and hosts
  # Gradient accumulation: each device's rows of the batch are split into this many
  # micro-batches, run one after another, their gradients summed, then one update: the same
  # update as the whole batch at once, with one micro-batch's activations in memory. The
  # batch per device must be divisible by it. 1 = the whole batch at once.
  config.train.microbatches = 1
  config.train.seq_len = 128
  config.train.steps = 1000
  config.train.max_minutes = 0.0  # wall-clock budget; stops (and checkpoints) early; 0 = none
  config.train.log_every = 50  # 0: only at the end
  # Validate, then checkpoint (each checkpoint keeps its validation metric); 0: only at the end.
  config.train.eval_every = 500
  config.train.eval_tokens = 0  # validation tokens scored during training; 0 = the whole split
  config.train.eval_batch_size = 16
  # Evaluation's nearest-neighbour decoding (embedding heads) scores this many vocabulary
  # words at a time, bounding memory to [eval tokens, chunk] whatever the vocabulary.
  config.train.neighbour_chunk_size = 8192
  config.train.keep_checkpoints = 2  # the last N, plus the best by the task's validation metric
  # A validation saves a checkpoint when it is at least as good as the best so far, at the last
  # step and at a stop; the others only once this many steps have passed since the last save
  # (a resume repeats the steps after it exactly). 0: every validation saves.
  config.train.checkpoint_every = 0
  # Steps whose checkpoints are kept whatever their rank (each must be a validation step): a
  # pre-training read downstream at several points along the way ("<workdir>:<step>").
  config.train.keep_steps = ()
  # Early stopping: stop after this many validations without a better best metric; 0 = never.
  config.train.patience = 0
  # The metric patience follows: the mean of the last N validations (1 = each as it is), so a
  # noisy dev metric (RuCoLA's MCC moves by +-0.1 between validations) neither stops a run nor
  # keeps it going on one lucky reading. The best checkpoint is still each validation's own.
  config.train.patience_window = 1
  # Steps whose loss, gradient or new parameters are NaN/Inf: 0 stops the run at the first (no
  # such state is ever saved); N > 0 skips up to N of them (the step changes nothing), then stops.
  config.train.max_bad_steps = 0
  return config


def use_task(config: ml_collections.ConfigDict, name: str, **fields) -> None:
  """Makes `name` the task, with its defaults (the task class's config_defaults) overridden by `fields`.

  A fine-tuning task reads its own files and brings its own head (its task.head_* keys), so
  the corpus section (config.data) and the language-model head's keys go: a config holds
  only keys that are read, and a resume compares only those. The masked LM keeps both.
  """
  if name not in tasks.TASKS:
    raise errors.ConfigError(f"task {name!r} is not known; choose one of {sorted(tasks.TASKS)}")
  defaults = copy.deepcopy(tasks.TASKS[name].config_defaults)
  unknown = set(fields) - set(defaults)
  if unknown:
    raise errors.ConfigError(f"task {name!r} has no keys {sorted(unknown)}; known: {sorted(defaults)}")
  config.task = ml_collections.ConfigDict({"name": name, **defaults, **fields})
  if name not in CORPUS_TASKS:
    del config.data
    for key in heads.LANGUAGE_MODEL_HEAD_KEYS:
      del config.model[key]


CORPUS_TASKS = ("causal_lm", "masked_lm")


def use_small_encoder(config: ml_collections.ConfigDict, family: str, *, dropout: float = 0.0) -> None:
  """One CPU-sized encoder per family, shared by masked-LM pre-training (configs/wt2_mlm.py,
  ru_mlm.py) and fine-tuning (configs/finetune.py), so a pre-trained checkpoint fits: the
  transformer as configured (2 layers by default), a 2-layer bidirectional LSTM and a
  4-block two-sided TCN (kernel 3: 61 tokens of context), both model.width wide. Dropout
  is not a parameter: each config sets its own.
  """
  width = config.model.width
  if family == "transformer":
    use_encoder(config, "transformer", dropout=dropout)
  elif family == "lstm":
    use_encoder(config, "lstm", num_layers=2, hidden_size=width, weight_drop=0.0, dropout_input=dropout,
                dropout_between=0.0, dropout_output=dropout)
  elif family == "tcn":
    use_encoder(config, "tcn", num_layers=4, hidden_size=width, kernel_size=3, dropout=dropout,
                dropout_input=dropout)
  else:
    raise errors.ConfigError(f"no small encoder for family {family!r}")


def use_encoder(config: ml_collections.ConfigDict, family: str, **fields) -> None:
  """Makes the body a `family` encoder (causal=False: it sees the whole sequence).

  The transformer keeps its other keys and takes `fields` as overrides; another family's
  section is exactly `fields` (use_body).
  """
  if family == "transformer":
    for key, value in {**fields, "causal": False}.items():
      config.model.transformer[key] = value
  else:
    use_body(config, family, **fields, causal=False)


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
      raise errors.ConfigError(f"{config_file}: unknown variant {key!r}; known variants: {sorted(allowed)}")
    choices = allowed[key]
    if choices is not True and value not in choices:
      raise errors.ConfigError(f"{config_file}: variant {key}={value!r} not in {sorted(choices)}")


def use_body(config: ml_collections.ConfigDict, family: str, **fields) -> None:
  """Makes `family` the body, with exactly `fields` as config.model.<family>.

  The base config's transformer keys are dropped for another family, so no key
  in the config is one that nothing reads.
  """
  del config.model[config.model.family]
  config.model.family = family
  config.model[family] = ml_collections.ConfigDict(fields)


# Body keys apply_smoke shrinks, whatever the family: (key, smoke value). A key is
# only ever made smaller, so a feature that is off (0) stays off and one that is on
# stays on (memory, banded attention), and the smoke run exercises the same code.
SMOKE_BODY = (("num_layers", 1), ("num_heads", 2), ("hidden_size", 32), ("memory_length", 16),
              ("attention_window", 8))
SMOKE_SEQ_LEN = 16


def use_small_batch_recipe(config: ml_collections.ConfigDict) -> None:
  """The batch, optimiser and head biases configs/wt2_families.py and configs/wt2_heads.py were
  measured with: 16 x 64 tokens a step, AdamW 2e-3 after 50 warmup steps, output biases on.
  The quickstart itself takes 4,096-token steps without output biases (a faster CPU step);
  these configs keep the recipe their results came from.
  """
  config.train.batch_size = 16
  config.train.log_every = 20
  config.optim.lr = 2e-3
  config.optim.warmup_steps = 50
  config.model.output_bias = True


def apply_smoke(config: ml_collections.ConfigDict) -> None:
  """Shrinks any config to seconds on a CPU: used by tests and notebooks."""
  config.model.width = 32
  family = config.model.family
  body = config.model[family]
  for key, value in SMOKE_BODY:
    if key in body and body[key]:
      body[key] = min(body[key], value)
  if body.get("attention_implementation") == "cudnn":
    body.attention_implementation = "xla"  # cuDNN attention exists on GPUs only
  if "max_length" in body:
    body.max_length = SMOKE_SEQ_LEN  # positions for exactly the smoke segments
  if "adaptive_cutoffs" in config.model:  # a language model's head
    # Test fixtures have vocabularies of ~60 words; these cutoffs fit any vocabulary above 40.
    config.model.adaptive_cutoffs = (20, 40)
  config.train.max_minutes = 0.0
  config.train.batch_size = 8
  config.train.seq_len = SMOKE_SEQ_LEN
  config.train.steps = 6
  config.train.log_every = 2
  config.train.eval_every = 3
  config.train.eval_tokens = 512
  config.train.eval_batch_size = 4
  config.optim.warmup_steps = 2


def finish(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config.lock()
  return config
