"""AWD-LSTM-like 3-layer LSTM on WikiText-2 (Merity, Keskar & Socher, 2018).

  python launch/train.py --config=configs/wt2_lstm.py --workdir=runs/wt2_lstm
  python launch/evaluate.py --workdir=runs/wt2_lstm --best --split=test --batch_size=1

Anchor: AWD-LSTM reaches 68.6 validation / 65.8 test perplexity on WikiText-2 (33M
parameters) after 750 epochs with NT-ASGD plus a fine-tuning stage (69.1 / 66.0
before fine-tuning). The model here is the same: 3 layers, 1150 hidden units, 400-wide
tied embeddings, weight drop 0.5 on the hidden-to-hidden matrices, locked dropout
0.65 / 0.2 / 0.4 (input / between layers / output), embedding dropout 0.1, BPTT 70,
batch 80, 750 epochs (278,250 steps of 5,600 tokens).

What differs, because jaxlm's optimisers are adamw | adam_l2 | sgd:
  - plain SGD at AWD's lr 30 with its clip 0.25 and L2 1.2e-6, decayed by a cosine
    schedule, in place of NT-ASGD (SGD that switches to iterate averaging when
    validation stalls) and the fine-tuning stage; AWD's ablation puts plain SGD
    several points behind;
  - no activation regularisation (AR/TAR, alpha 2, beta 1): the loss sees only logits;
  - a fixed BPTT length of 70 rather than AWD's randomised one;
  - biases are exempt from the L2 penalty, and the word table starts N(0, 0.02)
    instead of U(-0.1, 0.1).
Expected: from AWD's ablations, roughly 72-80 validation perplexity after the full
schedule (not run yet). Measured (BENCHMARKS.md, one H100 shared with a transformer
run): a 52-epoch schedule (--config.train.steps=19292, 19 minutes) reached validation
88.9 / test 84.4, still improving; alone, 30.2 ms a step (185k tokens/s).
Cost: 33.5M parameters (20.2M body), 0.2 GFLOP per token, 3.1e17
FLOPs over 1.56B tokens; the 70-step sequential scan, more than the FLOPs, sets the
step time: 30 ms on an H100 (measured), so about 2.3 hours for 750 epochs.

Evaluation convention: AWD-LSTM's. State is carried over the whole split in segments
of 70; AWD scores validation in 10 rows (eval_batch_size) and test in 1
(--batch_size=1 above: one row, carried from the first token to the last). Training
streams the corpus the same way (data.batching="stream", truncated BPTT).

Variants: `smoke` shrinks everything to seconds on a CPU.
"""

from configs import common

# WikiText-2 train has 2,088,628 tokens; 80 streams in segments of 70 give 371 steps
# an epoch (lm_batches.stream_segments_per_epoch).
STEPS_PER_EPOCH = 371


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"smoke": True}, __file__)
  config = common.base_config()
  config.model.width = 400  # AWD's emsize; the last LSTM layer has this size, so tying needs no projection
  config.model.embedding_dropout = 0.1  # AWD: dropoute
  common.use_body(config, "lstm",
                  num_layers=3,
                  hidden_size=1150,  # AWD: nhid
                  weight_drop=0.5,  # AWD: wdrop, DropConnect on hidden-to-hidden only
                  dropout_input=0.65,  # AWD: dropouti (WikiText-2 default)
                  dropout_between=0.2,  # AWD's WikiText-2 command: --dropouth 0.2
                  dropout_output=0.4)  # AWD: dropout
  config.data.batching = "stream"  # hidden state carried across consecutive segments

  config.optim.name = "sgd"  # AWD: SGD then ASGD; jaxlm has no averaging (see the docstring)
  config.optim.lr = 30.0
  config.optim.weight_decay = 1.2e-6  # L2 added to the gradient, as torch.optim.SGD's weight_decay
  config.optim.clip_norm = 0.25
  config.optim.warmup_steps = 0
  config.optim.schedule = "cosine"  # stands in for the averaging that ASGD does at the end
  config.optim.final_lr_fraction = 0.01

  config.train.batch_size = 80
  config.train.seq_len = 70  # AWD: bptt
  config.train.steps = 750 * STEPS_PER_EPOCH
  config.train.log_every = 200
  config.train.eval_every = 5 * STEPS_PER_EPOCH
  config.train.eval_tokens = 0  # the whole validation split, state carried
  config.train.eval_batch_size = 10  # AWD: eval_batch_size
  if "smoke" in variants:
    common.apply_smoke(config)
  return common.finish(config)
