"""AWD-LSTM-like 3-layer LSTM on Penn Treebank: configs/wt2_lstm.py with AWD's PTB settings.

PTB is LDC-licensed and never shipped or committed: point data.path at a folder
holding ptb.train.txt, ptb.valid.txt and ptb.test.txt (Mikolov's preprocessing).

  python launch/train.py --config=configs/ptb_lstm.py --workdir=runs/ptb_lstm \\
      --config.data.path=../shared/data/ptb
  python launch/evaluate.py --workdir=runs/ptb_lstm --best --split=test --batch_size=1

Anchor: AWD-LSTM reaches 60.0 validation / 57.3 test perplexity on PTB (24M
parameters) after 500 epochs with NT-ASGD plus fine-tuning (60.7 / 58.8 before
fine-tuning). Its PTB command differs from WikiText-2's in batch 20, dropouti 0.4
and dropouth 0.25; everything else, and every difference from AWD (plain SGD with
a cosine decay instead of NT-ASGD, no AR/TAR, fixed BPTT 70), is in
configs/wt2_lstm.py. Expected: not measured yet; roughly 63-70 validation
perplexity after the full schedule, judging by AWD's ablations. Cost: 500 epochs
= 331,000 steps of 1,400 tokens (463M tokens); 24.2M parameters, 0.15 GFLOP per
token, 6.7e16 FLOPs; the 70-step scan, not the FLOPs, sets the step time.

Evaluation convention: AWD-LSTM's, as in configs/wt2_lstm.py (state carried over
the whole split; 10 rows for validation, 1 for test with --batch_size=1).

Variants: `smoke` shrinks everything to seconds on a CPU (data.path still needed
to train; building the model needs no data).
"""

from configs import common, wt2_lstm

# PTB train has 929,589 tokens; 20 streams in segments of 70 give 662 steps an epoch.
STEPS_PER_EPOCH = 662


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"smoke": True}, __file__)
  config = wt2_lstm.get_config()
  config.data.corpus = "ptb"
  config.data.path = ""  # the user's copy, e.g. ../shared/data/ptb; "" fails with how to get it
  config.model.lstm.dropout_input = 0.4  # AWD's PTB command: --dropouti 0.4
  config.model.lstm.dropout_between = 0.25  # --dropouth 0.25
  config.train.batch_size = 20  # --batch_size 20
  config.train.steps = 500 * STEPS_PER_EPOCH  # --epoch 500
  config.train.eval_every = 5 * STEPS_PER_EPOCH
  if "smoke" in variants:
    common.apply_smoke(config)
  return common.finish(config)
