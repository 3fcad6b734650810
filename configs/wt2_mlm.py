"""Masked-LM pre-training (BERT's objective) on the WikiText-2 copy shipped in the repo.

  python launch/train.py --config=configs/wt2_mlm.py --workdir=runs/wt2_mlm/transformer
  python launch/evaluate.py --workdir=runs/wt2_mlm/transformer --split=valid,test

The quickstart's model, data and budget (configs/quickstart.py: width 256, 2 layers,
4 heads, the tied adaptive softmax, 64 x 64 tokens a step, AdamW 2e-3, 590 steps,
about 8 CPU minutes), with the body an encoder (model.<family>.causal=False) and the
task jaxlm.tasks.masked_lm: each window has 15% of its tokens chosen (80% of those
become <mask>, 10% a random word, 10% stay) and only the chosen are scored. The
vocabulary is WikiText-2's 33,278 words plus <mask> (id 33,278).

Not measured yet. Expected: about the quickstart's tokens per second for the transformer
(the same shapes; the adaptive head scores every position, chosen or not); whether the
masked-token perplexity ends below the quickstart's next-word 268 (both sides of the word
are seen) or above it (only ~10 of every 64 tokens are scored, BERT's cost) is the first
thing to measure. Evaluation scores every window of the split once with a fixed masking,
so validation numbers compare across runs and checkpoints.
A trained workdir is an encoder start for fine-tuning (config init.checkpoint;
configs/finetune.py): its saved vocabulary ends with <mask>.

Variants (`--config=configs/wt2_mlm.py:body=lstm,head=softmax`):
  body=transformer (default) | lstm | tcn   the encoder (common.use_small_encoder):
                  bidirectional attention; a 2-layer bidirectional LSTM (each direction half
                  of model.width); 4 two-sided dilated convolution blocks (kernel 3,
                  dilations 1..8, 61 tokens of context)
  head=adaptive (default) | softmax | cosine | l2 | vmf   the output layer; the embedding
                  heads predict the masked word's FastText vector (train it first:
                  python launch/fasttext.py --config=configs/wt2_mlm.py --output=runs/wt2_mlm/fasttext.bin)
  smoke           seconds on a CPU (tests, notebooks)
"""

import ml_collections

from configs import common, quickstart

HEADS = ("adaptive", "softmax", "cosine", "l2", "vmf")
BODIES = ("transformer", "lstm", "tcn")


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"body": BODIES, "head": HEADS, "smoke": True}, __file__)
  config = quickstart.get_config()
  config.unlock()  # the task and body sections are replaced below; finish() locks again
  common.use_task(config, "masked_lm")
  common.use_small_encoder(config, variants.get("body", "transformer"))
  config.model.head = variants.get("head", "adaptive")
  # Embedding heads: width = target_dim = the FastText dimension, so one .bin (trained by
  # launch/fasttext.py from the fields below) serves; centred targets (raw ones decode to hub
  # words: configs/wt2_heads.py). Unused by the softmax heads.
  config.model.target_dim = config.model.width
  config.model.center_targets = True
  if config.model.head not in ("softmax", "adaptive"):
    config.model.target_vectors = "runs/wt2_mlm/fasttext.bin"
  config.model.bucket = 100_000  # launch/fasttext.py: FastText's 2M buckets would make a 2 GB .bin
  # Read by launch/fasttext.py only; corpus "" = the train split of config.data.
  config.fasttext = ml_collections.ConfigDict(dict(corpus="", sg=True, epochs=5, min_count=1, window=5,
                                                   workers=2, seed=0))
  if "smoke" in variants:
    common.apply_smoke(config)
    config.train.max_minutes = 0.0
    config.model.target_dim = config.model.width
    config.model.bucket = 2_000
    config.fasttext.epochs = 1
  return common.finish(config)
