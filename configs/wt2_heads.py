"""Output heads on WikiText-2: softmax, adaptive softmax, cosine, L2 or von Mises-Fisher.

The quickstart's model (configs/quickstart.py: a 2-layer transformer) with the small-batch
recipe these were measured with (16 x 64 tokens per step and AdamW 2e-3, common.use_small_batch_recipe),
with a 10-minute budget (600 steps) at width 300, with only the head switched, so accuracy against wall time
compares heads alone. The embedding heads predict a 300-d vector trained against each next
word's fixed FastText vector (Kumar & Tsvetkov, ICLR 2019). Width = target_dim = FastText
dim, so one FastText file fits, and launch/fasttext.py takes its dim from model.width.
First train the vectors on WikiText-2 train (the launcher writes the split out as the LM
tokenises it; <eos> is not in that text, so its target is composed from n-grams):

  python launch/fasttext.py --config=configs/wt2_heads.py --output=runs/wt2_heads/fasttext.bin

then one run per head, and the whole test split per run:

  for head in softmax adaptive cosine l2 vmf; do
    python launch/train.py --config=configs/wt2_heads.py:head=$head --workdir=runs/wt2_heads/$head
    python launch/evaluate.py --workdir=runs/wt2_heads/$head --split=test
  done

Compare validation `accuracy` / `accuracy_top5` (every 250 steps) in each workdir's
metrics.jsonl against `training_seconds` (launch/plot.py draws it): for an embedding head
`perplexity` is only exp(loss), not a perplexity. Kumar & Tsvetkov report up to 2.5x
faster training at similar quality in translation. Measured here (BENCHMARKS.md, one core
per run): the embedding heads run 4-5x the softmax's tokens/s but plateau at 3-6% top-1
against 14-18% for the softmax and adaptive softmax; the adaptive softmax is the best
head per CPU-second. Targets are centred (model.center_targets): raw FastText targets
decoded to a few hub words, with top-1 accuracy 0.

Variants: `head=softmax|adaptive|cosine|l2|vmf` (default softmax); `smoke` shrinks everything to
seconds (target_dim follows the smoke width, so an embedding head needs vectors of that
dimension). The vMF regularised variants: --config.model.vmf_lambda1=0.02 or
--config.model.vmf_lambda2=0.1.
"""

import ml_collections

from configs import common, quickstart

HEADS = ("softmax", "adaptive", "cosine", "l2", "vmf")


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"head": HEADS, "smoke": True}, __file__)
  smoke = "smoke" in variants
  config = quickstart.get_config("smoke" if smoke else None)
  config.model.head = variants.get("head", "softmax")
  config.model.output_bias = True  # smoke too: the model whose results are recorded
  if not smoke:
    common.use_small_batch_recipe(config)  # the recipe the results were measured with
    # FastText's usual 300-d vectors, the width launch/benchmark_heads.py measures; 4 heads of 75 dims.
    config.model.width = 300
    # A 10-minute budget (the quickstart itself stops by 9.5 to fit its README command).
    config.train.steps = 600
    config.train.max_minutes = 10.0
    config.train.eval_every = 250  # more points on the accuracy-against-time curve
  config.model.target_dim = config.model.width
  if config.model.head not in ("softmax", "adaptive"):
    config.model.target_vectors = "runs/wt2_heads/fasttext.bin"
  # Raw FastText targets decoded to a few hub words (top-1 accuracy 0 for vMF: BENCHMARKS.md);
  # their mean direction is removed (jaxlm.starts.target_vectors.center). False: the raw vectors.
  config.model.center_targets = True
  # Read by launch/fasttext.py (the word input does not use n-grams): FastText's default 2M
  # buckets would make the .bin 2.4 GB; 100k keep it ~0.2 GB.
  config.model.bucket = 100_000 if not smoke else 2_000
  with config.unlocked():
    # Read by launch/fasttext.py only; dim, min_n, max_n and bucket come from config.model.
    # corpus "" = the train split of config.data. WikiText-2 already maps rare words to
    # <unk>, so min_count=1 gives every vocabulary word a trained vector of its own.
    config.fasttext = ml_collections.ConfigDict(dict(
        corpus="", sg=True, epochs=5 if not smoke else 1, min_count=1, window=5, workers=4, seed=0))
  return common.finish(config)
