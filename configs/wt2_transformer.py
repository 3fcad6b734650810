"""The small-data transformer recipe on WikiText-2: a regularised Transformer-XL.

  python launch/train.py --config=configs/wt2_transformer.py --workdir=runs/wt2_transformer
  python launch/evaluate.py --workdir=runs/wt2_transformer --best --split=test

A budgeted run, e.g. 30 GPU-minutes: set steps from the measured step time, since the
schedule follows `steps` (max_minutes only stops early, and checkpoints):

  python launch/train.py --config=configs/wt2_transformer.py --workdir=runs/wt2_transformer_30m \\
      --config.train.steps=20000 --config.train.max_minutes=30

Anchor: a 16-layer Transformer-XL with discrete embedding dropout, locked
input and output dropout and weight decay reaches 63.4 test perplexity on WikiText-2
after 125,000 steps (~600M tokens, about 7 hours); the same kind of model without
those regularisers stalls near 90-97. The target here: below 63.4 test perplexity
after the full 75,000 steps (614M tokens, ~294 epochs). The regularisation
strengths below are jaxlm's choices, untuned: input and output dropout were raised
from 0.3 to 0.4 after a run without embedding dropout (BENCHMARKS.md, one H100, 6.5
minutes) overfitted from step 4,000 (16 epochs: best validation 86.2 / test 82.3).
That run could not use embedding dropout: its first step's gradient was NaN. The
cause was not the GPU: relative positions add nothing to the input, so a dropped word
at a stream's first position (no context) left an all-zero residual stream whose
LayerNorm gradients overflowed over 16 layers; the body now adds a learned offset to
every position (jaxlm/models/transformer.py). With embedding dropout and these
settings, an 18,000-step run (147M tokens, ~20 minutes on an H100 shared with an LSTM
run) reached its best at step 6,130: validation 83.7 / test 79.5, then overfitted
again (111.99 validation at the end): stronger regularisation is the next thing to try.
Cost: ~290 MFLOP per token (6 x 43.6M parameters plus attention over 128-256 keys),
~1.8e17 FLOPs for the run: about 10 minutes at 30% of an H100's bf16 peak, 30 at
10%. Measured on one H100: 264k tokens/s alone (30-35% of the measured bf16 matmul
rate), so the full 614M tokens take ~39 minutes; BENCHMARKS.md records the runs.

Shape: 16 pre-LayerNorm layers (GPT-2 init, residual projections scaled by
1/sqrt(2 * layers)), width 384 with 6 heads of 64, MLP 4x. Transformer-XL's width 410
means 10 heads of 41: 41 is not a multiple of 8, which cuDNN flash attention refuses
and tensor-core matmuls pad. 384 = 6 x 64 keeps every matmul dimension a multiple of
128 and the head width at flash attention's best-supported 64, at 0.88x the anchor's
body parameters (30.8M vs 35.1M; 43.6M in all with the tied 33,278 x 384 table).
For the anchor's exact shape: --config.model.width=410 --config.model.transformer.num_heads=10.

Evaluation convention: Transformer-XL's. The split is cut into eval_batch_size
contiguous rows, read in segments of seq_len=128 with the memory of the previous 128
positions carried, so every token sees 128-255 earlier tokens (only the first segment
of each row starts empty); every target is scored exactly once. Training streams the
corpus the same way (data.batching="stream"), memory carried from step to step.

Variants:
  positions=rotary  rotary positions (RoPE) in place of Transformer-XL's relative ones,
         memory kept (128 slots; query i of a segment is numbered 128 + i): attention
         runs through jax.nn.dot_product_attention, cuDNN flash attention in bf16, in
         training and evaluation, with the causal and memory mask passed explicitly
         (jaxlm/models/transformer.py says why). No attention dropout (jax's fused call
         has none; the other dropouts stay) and no u/v biases or relative-key
         projection (41.2M parameters, 2.4M fewer). Measured (BENCHMARKS.md, "Rotary positions on
         the fused attention path"): on one H200, 394k tokens/s, 1.40x the relative-position
         recipe; its perplexity is not measured yet (launch/gpu_recipe.sh train is the prepared run).
  fast   no memory, learned absolute positions, no attention dropout: the cuDNN flash
         attention path (bf16) in training and evaluation. Segments of 256 at the same
         8,192 tokens a step, drawn as random windows (nothing is carried). Evaluation
         scores non-overlapping 256-token segments, each starting with no context, so
         expect a higher perplexity than the memory model for the same training.
  smoke  shrinks everything to seconds on a CPU (memory stays on, 16 slots; cuDNN -> xla).
"""

from configs import common
from jaxlm import errors

SEQ_LEN = 128


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"fast": True, "positions": ("relative", "rotary"), "smoke": True}, __file__)
  config = common.base_config()
  config.model.width = 384  # 6 heads of 64: see the docstring
  config.model.compute_dtype = "bfloat16"  # a GPU recipe; parameters, logits and losses stay float32
  # Drop whole word types (AWD-LSTM's dropoute): on 2M tokens frequent words are
  # otherwise memorised in their contexts.
  config.model.embedding_dropout = 0.1
  config.model.transformer.update(dict(
      num_layers=16,  # the anchor's depth
      num_heads=6,
      mlp_ratio=4,
      dropout=0.2,  # elementwise on the input and every residual branch; 0.1 overfits WikiText-2
      positions="relative",  # Transformer-XL: memory needs positions by distance, not by index
      max_length=SEQ_LEN,  # read only by absolute positions (:fast); relative ones have no limit
      input_dropout=0.4,  # locked: one mask per row, the same features dropped at every position
      output_dropout=0.4,  # locked, after the final LayerNorm, before the tied softmax (AWD: 0.4)
      attention_dropout=0.1,
      attention_window=0,
      memory_length=SEQ_LEN,  # one previous segment, as Transformer-XL trains
      attention_implementation="xla",  # relative positions take the explicit float32-softmax path
  ))
  config.data.batching = "stream"  # memory carries the previous segment of the same row

  config.optim.lr = 6e-4  # pre-norm tolerates more than Transformer-XL's post-norm 2.5e-4
  config.optim.weight_decay = 0.1  # decoupled (AdamW), matrices only
  config.optim.clip_norm = 0.25  # Transformer-XL's clip
  config.optim.warmup_steps = 2000
  config.optim.final_lr_fraction = 0.01

  config.train.batch_size = 64  # 64 x 128 = 8,192 tokens a step: fills a GPU better than the anchor's ~4,800
  config.train.seq_len = SEQ_LEN
  config.train.steps = 75_000  # 614M tokens, the anchor's ~600M
  config.train.log_every = 250
  config.train.eval_every = 2500
  config.train.eval_tokens = 0  # the whole validation split (217k tokens) takes seconds on a GPU

  if variants.get("positions") == "rotary":
    if "fast" in variants:
      raise errors.ConfigError(f"{__file__}: choose either the variant fast (learned positions, no memory) or "
                               "positions=rotary (rotary positions with memory)")
    config.model.transformer.update(dict(
        positions="rotary",  # rotated queries and keys: nothing but q, k and v enters the fused kernel
        attention_dropout=0.0,  # attention dropout would leave the fused kernel in training
        attention_implementation="cudnn"))  # flash attention with the memory mask as a bias
  if "fast" in variants:
    fast_seq_len = 256  # without memory, context comes only from the segment itself
    config.model.transformer.update(dict(
        positions="learned", max_length=fast_seq_len, memory_length=0,
        attention_dropout=0.0,  # attention dropout would leave the fused kernel
        attention_implementation="cudnn"))
    config.data.batching = "windows"  # nothing carried, so random windows shuffle better
    config.train.seq_len = fast_seq_len
    config.train.batch_size = 32  # the same 8,192 tokens a step
  if "smoke" in variants:
    common.apply_smoke(config)
  return common.finish(config)
