"""Russian LM pre-training on RusLit: scratch vs FastText starts, for word, bag and BPE inputs.

The question: does starting from FastText (and composing words from
n-grams, as FastText does) converge faster than training from scratch, and what
does freezing the FastText table cost? One model size and budget for all runs: a
2-layer, width-128 transformer with the adaptive softmax (the exact softmax,
factorised over frequency clusters: jaxlm.models.heads.adaptive_softmax), 16 x 64 tokens per
step, 1,000 steps (a step budget: the comparison is in steps).

Variants (`--config=configs/ru_lm.py:input=bag,init=fasttext`):
  input=word   word table over the 32,000 most frequent train words (+ <unk>)
  input=bag    the same words, each the mean of its row and its hashed character
               3..5-gram rows (100,000 buckets), as FastText composes a word
  input=bpe    SentencePiece BPE, 32,000 pieces, trained on the same word-tokenised text
  init=scratch random tables (config.seed)
  init=fasttext  word: fasttext_words; bag: fasttext_bag (word rows and n-gram buckets,
               so the bag starts at FastText's word vectors, times one scale factor:
               model.fasttext_std below); bpe: fasttext_pieces
  init=frozen  the FastText start, with the input table frozen (tied: the output too)
  head=adaptive (default) | softmax | cosine | l2 | vmf   the output layer; the
               embedding heads need --config.model.target_vectors=<the FastText .bin>
  smoke        seconds on a CPU once the corpus is cached (width 32, tiny bucket/vocab)
Every vocabulary is the same size, so every model has the same parameter count and
step cost, except the bag's extra 100,000 x 128 n-gram rows (and up to 76 rows
gathered per token), which make its steps ~1.5x slower.

Commands, from the repository root (RusLit is never shipped; give its folder):
  # 1. FastText on the train split, tokenised as the LM sees it (sg, dim 128 = model.width,
  #    n-grams 3..5, 100,000 buckets, 5 epochs; one file serves word, bag and bpe). The first
  #    call also tokenises RusLit into the cache (about a minute). 4.2 minutes on the 2-core
  #    CPU (2 workers):
  python launch/fasttext.py --config=configs/ru_lm.py --config.data.path=../shared/data/ruslit \
      --output=runs/ru_lm/fasttext.bin
  # 2. One LM run per start (about 11 minutes each for word and BPE, 14 for the bag, on one
  #    core; BENCHMARKS.md ran two at a time, `taskset -c 0` and `taskset -c 1`):
  for run in word,scratch word,fasttext word,frozen bag,scratch bag,fasttext bag,frozen \
             bpe,scratch bpe,fasttext; do
    input=${run%,*}; init=${run#*,}
    python launch/train.py --config=configs/ru_lm.py:input=$input,init=$init \
        --config.data.path=../shared/data/ruslit --config.model.fasttext_path=runs/ru_lm/fasttext.bin \
        --workdir=runs/ru_lm/${input}_${init}
  done
  # 3. Each run's best checkpoint on the held-out works:
  python launch/evaluate.py --workdir=runs/ru_lm/bag_fasttext --best --split=test
(model.fasttext_path is only read by init=fasttext|frozen; passing it to scratch runs is harmless.)

Expected comparison: validation loss against steps (each workdir's metrics.jsonl,
kind "valid", every 250 steps) for scratch vs FastText vs frozen FastText, for each
input, and BPE scratch vs BPE+FastText. The claim to check: FastText starts reach a
given validation loss at least 2x sooner (in steps) than scratch; the bag with
fasttext_bag fastest; frozen FastText converging first but plateauing above the
tuned start. Losses are per token: word and bag runs compare directly (same
vocabulary and <unk>); BPE losses are per piece, so compare BPE runs among
themselves, or convert to per word: the valid split is 624,994 word tokens (<eos>
included; 8.1% of them <unk>) and 717,748 pieces, so loss per word = loss per piece
x 1.148 (and the word models' <unk> makes their loss easier than BPE's).
FastText rows are scaled to the scratch init's std (model.fasttext_std), so every
start begins at the same loss and only the vectors' directions differ.
"""

import ml_collections

from configs import common

INPUTS = {"word": ("word", "word", "fasttext_words"),  # variant -> (model.input, data.tokenizer, init)
          "bag": ("bag", "word", "fasttext_bag"),
          "bpe": ("word", "bpe", "fasttext_pieces")}
INITS = ("scratch", "fasttext", "frozen")
HEADS = ("adaptive", "softmax", "cosine", "l2", "vmf")


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"input": tuple(INPUTS), "init": INITS, "head": HEADS, "smoke": True},
                        __file__)
  config = common.base_config()
  config.data.corpus = "ruslit"  # data.path must be given: the corpus is never shipped
  # A word vocabulary of all of RusLit's ~300k lowercased types would make the softmax the
  # whole model; 32k covers most tokens, and BPE gets the same size so steps cost the same.
  config.data.max_vocab = 32000
  config.data.bpe_vocab_size = 32000
  model_input, tokenizer, fasttext_init = INPUTS[variants.get("input", "word")]
  init = variants.get("init", "scratch")
  config.data.tokenizer = tokenizer
  config.model.input = model_input
  config.model.init = "scratch" if init == "scratch" else fasttext_init
  config.model.freeze_embeddings = init == "frozen"
  # The exact softmax, factorised over frequency clusters (jaxlm.models.heads.adaptive_softmax): the same
  # perplexities as a full softmax at ~2.5x the steps per CPU-minute. Its output rows are the
  # tied input rows, so a FastText start shapes the output layer too.
  config.model.head = variants.get("head", "adaptive")
  # Embedding heads: raw FastText targets decode to hub words (BENCHMARKS.md, "Output heads").
  config.model.center_targets = True
  if tokenizer == "bpe":
    # Piece ids are SentencePiece's merge order, not frequency: more tokens fall in the tail
    # clusters (14%, 11%, 10% of RusLit train pieces; 99.9th percentiles of a 1,024-token
    # batch 18%, 14%, 16%), so gather more (word vocabularies: the WikiText-2 defaults fit).
    config.model.adaptive_capacities = (0.19, 0.16, 0.17)
  # Raw FastText rows (n-gram rows' std ~1.5) through the tied head start the loss near 21 nats
  # instead of ln(32000) = 10.4; scaled to the scratch init's std, every start begins alike.
  config.model.fasttext_std = 0.02
  # FastText's default 2M buckets would make the bag's table 2M x 128; 100k keeps it CPU-sized,
  # and 3..5-grams cover Russian stems and endings with fewer rows per word than 3..6.
  config.model.bucket = 100_000
  config.model.min_n = 3
  config.model.max_n = 5
  # A 2-core-CPU size and budget: the quickstart's shape at width 128 (more steps in 10 minutes).
  config.model.width = 128
  config.model.transformer.num_layers = 2
  config.model.transformer.num_heads = 4
  config.model.transformer.max_length = 64
  config.train.seq_len = 64
  config.train.batch_size = 16
  # A step budget, not a time budget: the claim is about steps, and runs can then share
  # the machine (two at a time, one core each) without changing their curves.
  config.train.steps = 1000
  config.train.log_every = 50
  config.train.eval_every = 250  # a validation curve of 12 points per run
  config.train.eval_tokens = 50_000
  config.optim.lr = 3e-3
  config.optim.warmup_steps = 100
  # launch/fasttext.py: dim, min_n, max_n and bucket come from config.model; corpus "" is the
  # train split above in the LM's tokenisation. Skip-gram: better vectors for rare word forms.
  config.fasttext = ml_collections.ConfigDict(dict(
      corpus="", sg=True, epochs=5, min_count=3, window=5, workers=2, seed=0))
  if "smoke" in variants:
    common.apply_smoke(config)
    config.data.max_vocab = 2000
    config.data.bpe_vocab_size = 2000
    config.model.bucket = 2000
    config.train.max_minutes = 0.0
    config.fasttext.epochs = 1
  # Embedding heads predict a width-d vector against each next word's FastText
  # vector: the same .bin as model.fasttext_path, given as --config.model.target_vectors.
  config.model.target_dim = config.model.width
  return common.finish(config)
