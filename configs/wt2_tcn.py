"""The PTB temporal convolutional network (configs/ptb_tcn.py) on WikiText-2.

  python launch/train.py --config=configs/wt2_tcn.py --workdir=runs/wt2_tcn
  python launch/evaluate.py --workdir=runs/wt2_tcn --best --split=test --seq_len=1040

Anchor: none published for this model on WikiText-2 (Bai et al. report PTB only:
88.68, against 78.93 for their LSTM); it is here to compare families on equal data
and budgets, against configs/wt2_lstm.py (AWD-LSTM: 65.8 test) and
configs/wt2_transformer.py (63.4). Same model and optimiser as ptb_tcn.py;
receptive field 1 + 2 * (3 - 1) * (2**4 - 1) = 61 tokens. Expected: well behind the
LSTM (the gap the paper found on PTB), roughly 110-130 test perplexity (a guess, not
measured). Cost: 100 epochs = 163,200 steps of 1,280 tokens; 28.7M parameters
(20M of them the tied 33,278 x 600 table), 0.17 GFLOP per token, 3.6e16 FLOPs.

Evaluation convention: as in ptb_tcn.py (stateless segments; --seq_len=1040 lets
94% of tokens see their whole receptive field).

Variants: `smoke` shrinks everything to seconds on a CPU.
"""

from configs import common, ptb_tcn

# WikiText-2 train has 2,088,628 tokens; 16 windows of 80 a step: 1,632 steps an epoch.
STEPS_PER_EPOCH = 1632


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"smoke": True}, __file__)
  config = ptb_tcn.get_config()
  config.data.corpus = "wikitext2"
  config.data.path = ""  # the copy shipped in jaxlm/data/wikitext-2
  config.train.steps = 100 * STEPS_PER_EPOCH  # the paper's 100 epochs
  config.train.eval_every = STEPS_PER_EPOCH
  if "smoke" in variants:
    common.apply_smoke(config)
  return common.finish(config)
