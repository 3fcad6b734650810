"""Transformer, LSTM and TCN side by side on WikiText-2: one size, one head, 30 CPU minutes each.

  python launch/train.py --config=configs/wt2_families.py:family=transformer --workdir=runs/families/transformer
  python launch/train.py --config=configs/wt2_families.py:family=lstm --workdir=runs/families/lstm
  python launch/train.py --config=configs/wt2_families.py:family=tcn --workdir=runs/families/tcn
  python launch/evaluate.py --workdir=runs/families/lstm --split=valid,test   # each in turn

The question: on a 2-core CPU and a fixed 30 minutes of training, which body
learns WikiText-2 fastest? Everything but the body is shared: the quickstart's model with
the small-batch recipe these were measured with (common.use_small_batch_recipe): width 256,
the tied adaptive softmax with output biases, 16 x 64 tokens a step, AdamW at 2e-3 with
50 warmup steps and a cosine decay that ends with the budget, no dropout (a few epochs at
most: nothing to overfit yet). The bodies have about the same number of parameters, 1.58M:
  transformer  2 pre-norm layers, 4 heads, learned positions (12 x 256^2 a layer);
  lstm         3 layers of 256 (8 x 256^2 a layer), state carried across steps
               (data.batching="stream") and across the whole split in evaluation;
  tcn          4 residual blocks of dilated causal convolutions, kernel 3, dilations
               1, 2, 4, 8 (6 x 256^2 a block), receptive field 61 tokens.
Each family's `steps` is its measured steps per second on the 2-core machine times 30
minutes (BENCHMARKS.md), so every cosine schedule ends at the budget; max_minutes=30
is the hard stop. Evaluation follows each family's convention: the transformer scores
64-token segments that start with no context, the LSTM carries its state over the whole
split, the TCN scores 64-token segments (61 tokens of receptive field).

Measured (BENCHMARKS.md; full splits after training): transformer 175.1
valid / 162.9 test (its schedule ended at 24.8 minutes), TCN 203.8 / 186.4, LSTM
338.4 / 313.8 (this AdamW recipe does not suit it). These are not the published recipes
(configs/wt2_transformer.py, wt2_lstm.py, wt2_tcn.py are): those need a GPU and hours.

Variants: `family=transformer|lstm|tcn` (default transformer); `smoke` shrinks
everything to seconds (tests).
"""

from configs import common, quickstart

# Steps that fill 30 minutes on the 2-core CPU machine, from launch/benchmark.py's step
# time for each family (0.338, 0.350 and 0.286 s; BENCHMARKS.md), less ~10%
# for validation and the machine's run-to-run variation.
STEPS = {"transformer": 4800, "lstm": 4600, "tcn": 5650}
BUDGET_MINUTES = 30.0


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"family": tuple(STEPS), "smoke": True}, __file__)
  family = variants.get("family", "transformer")
  config = quickstart.get_config()
  config.unlock()  # the body section is replaced below; finish() locks again
  common.use_small_batch_recipe(config)  # the recipe the results below were measured with
  if family == "lstm":
    common.use_body(config, "lstm", num_layers=3, hidden_size=256, weight_drop=0.0,
                    dropout_input=0.0, dropout_between=0.0, dropout_output=0.0)
    config.data.batching = "stream"  # the state is carried from one step's segment to the next
  elif family == "tcn":
    common.use_body(config, "tcn", num_layers=4, hidden_size=256, kernel_size=3, dropout=0.0,
                    dropout_input=0.0)
  config.train.steps = STEPS[family]
  config.train.max_minutes = BUDGET_MINUTES
  config.train.eval_every = 1000
  config.train.log_every = 50
  if "smoke" in variants:
    common.apply_smoke(config)
    config.train.max_minutes = 0.0
  return common.finish(config)
