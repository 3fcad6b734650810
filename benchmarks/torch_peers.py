"""PyTorch peers of jaxlm's three model families: steady-state train-step throughput on the CPU.

  /work/peers-venv/bin/python benchmarks/torch_peers.py --family transformer --threads 2 \
      --steps 30 --warmup 3 --batch 16 --length 128 --vocab 33278 --width 256

Runs in its own virtual environment (benchmarks/peers-requirements.txt), never jaxlm's; the
jaxlm side of each pair, and both run alternately, is benchmarks/side_by_side.sh. Prints one
JSON line: family, parameters, step_seconds (the median over --groups groups of the timed
steps, as launch/benchmark.py's --trials), tokens_per_second, the torch version and threads.

A step is what jaxlm's train step (jaxlm/training/steps.py) does: forward, the mean
cross-entropy of a tied full softmax (no output bias), backward, gradient clipping to a global
norm of 1 (jaxlm's optim.clip_norm default) and an AdamW update (lr 1e-3, betas 0.9 / 0.99,
eps 1e-8, weight decay 0.01 on matrices only: jaxlm.training.optim.decay_mask). Batches are
uniform random token ids, made before the timing (launch/benchmark.py also prepares its batches
untimed; it reads WikiText-2, which changes no shape). Each peer matches a jaxlm config, run as
  launch/benchmark.py --config=configs/wt2_families.py:family=<family> --config.model.head=softmax
      --config.model.output_bias=False --config.train.batch_size=16 --config.train.seq_len=128
      --config.optim.lr=1e-3   (model.width 256 and model.tie_embeddings=True come from
      configs/quickstart.py; dropout is 0 in every family there)
plus the family's keys below:

  transformer  jaxlm/models/transformer.py, --config.model.transformer.num_layers=4
               --config.model.transformer.max_length=128 (4 heads, mlp_ratio 4, learned positions):
               Hugging Face's GPT2LMHeadModel at the same shapes. Both are GPT-2's block: pre-norm
               LayerNorms with biases, a fused qkv projection and the output projection with
               biases, a tanh-approximated GELU MLP of 4 x width, a final LayerNorm, N(0, 0.02)
               init with residual projections scaled by 1 / sqrt(2 x layers), no output bias.
               LayerNorm epsilon is set to flax's 1e-6 (GPT-2's own is 1e-5). Parameters agree
               exactly: 11,711,488. Attention: jax.nn.dot_product_attention (XLA) against
               torch's scaled_dot_product_attention (GPT2's "sdpa").
  lstm         jaxlm/models/lstm.py, --config.model.lstm.num_layers=2 (hidden_size 256, no weight
               drop or locked dropout): torch.nn.LSTM(256, 256, num_layers=2), same gate order
               (input, forget, cell, output) and U(-1/sqrt(256), 1/sqrt(256)) init. jaxlm has one
               bias [4 x 256] a layer, torch two (bias_ih, bias_hh): bias_hh is zeroed and frozen,
               so the function and the trained parameters are jaxlm's (9,569,792); torch still
               holds, and adds, its 2 x 1,024 zero biases. The state is carried from one step to
               the next without gradient, as jaxlm's data.batching="stream" does.
  tcn          jaxlm/models/tcn.py (num_layers 4, hidden_size 256, kernel_size 3; wt2_families'
               own): 4 residual blocks, block i two causal convolutions of dilation 2**i (left
               padding (3 - 1) x 2**i), each weight-normalised per output channel (torch's
               weight_norm parametrisation, dim 0: jaxlm's scale x direction / |direction| over
               (kernel, in)), with a bias, each followed by ReLU; the block's output is
               ReLU(convolutions + input): every block is 256 wide, so no 1x1 residual
               convolution. Init N(0, 0.01) directions, zero biases. Parameters agree exactly:
               10,096,128. jaxlm convolves [batch, length, channels] (NWC), torch
               [batch, channels, length] (its native layout): one transpose each way.

Left out on the torch side: jaxlm's step also computes the parameter and update norms (its logged
metrics and non-finite check, three reductions over the parameters) and follows a warmup-cosine
learning-rate schedule; the peer keeps lr constant.
"""

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TiedEmbedding(nn.Module):
  """jaxlm's WordEmbedding: a [vocab, width] table, N(0, 0.02), read as input and as the tied softmax."""

  def __init__(self, vocab: int, width: int):
    super().__init__()
    self.table = nn.Embedding(vocab, width)
    nn.init.normal_(self.table.weight, std=0.02)

  def forward(self, token_ids):  # [batch, length] -> [batch, length, width]
    return self.table(token_ids)

  def logits(self, hidden):  # [batch, length, width] -> [batch, length, vocab], no bias
    return F.linear(hidden, self.table.weight)


class LSTMPeer(nn.Module):
  """Embedding -> nn.LSTM (num_layers x width) -> tied softmax; the state carried between calls."""

  def __init__(self, vocab: int, width: int, num_layers: int):
    super().__init__()
    self.embedding = TiedEmbedding(vocab, width)
    self.lstm = nn.LSTM(width, width, num_layers=num_layers, batch_first=True)
    for layer in range(num_layers):  # jaxlm's LSTMLayer has one bias: keep bias_ih, fix bias_hh at 0
      recurrent_bias = getattr(self.lstm, f"bias_hh_l{layer}")
      nn.init.zeros_(recurrent_bias)
      recurrent_bias.requires_grad_(False)
    self.state = None  # (hidden, cell), each [num_layers, batch, width]

  def forward(self, token_ids):
    outputs, state = self.lstm(self.embedding(token_ids), self.state)  # [batch, length, width]
    self.state = tuple(part.detach() for part in state)  # no gradient into the previous segment
    return self.embedding.logits(outputs)


def weight_normalised_causal_conv(width: int, kernel_size: int, dilation: int) -> nn.Module:
  """jaxlm.models.tcn.DilatedConv: kernel = scale x direction / |direction| per output channel."""
  convolution = nn.Conv1d(width, width, kernel_size, dilation=dilation)
  nn.init.normal_(convolution.weight, std=0.01)
  nn.init.zeros_(convolution.bias)
  # weight [out, in, kernel]; dim=0 keeps one magnitude per output channel, initialised to the norm.
  return nn.utils.parametrizations.weight_norm(convolution, dim=0)


class TemporalBlock(nn.Module):
  def __init__(self, width: int, kernel_size: int, dilation: int):
    super().__init__()
    self.reach = (kernel_size - 1) * dilation  # left padding: output t sees inputs <= t
    self.convolutions = nn.ModuleList(
        [weight_normalised_causal_conv(width, kernel_size, dilation) for _ in range(2)])

  def forward(self, x):  # [batch, width, length]
    hidden = x
    for convolution in self.convolutions:
      hidden = F.relu(convolution(F.pad(hidden, (self.reach, 0))))
    return F.relu(hidden + x)


class TCNPeer(nn.Module):
  def __init__(self, vocab: int, width: int, num_layers: int, kernel_size: int):
    super().__init__()
    self.embedding = TiedEmbedding(vocab, width)
    self.blocks = nn.Sequential(*[TemporalBlock(width, kernel_size, 2 ** index) for index in range(num_layers)])

  def forward(self, token_ids):
    hidden = self.blocks(self.embedding(token_ids).transpose(1, 2))  # [batch, width, length]
    return self.embedding.logits(hidden.transpose(1, 2))


class GPT2Peer(nn.Module):
  """Hugging Face's GPT2LMHeadModel at jaxlm's transformer shapes, returning float32 logits."""

  def __init__(self, vocab: int, width: int, num_layers: int, num_heads: int, length: int):
    super().__init__()
    import transformers
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=length, n_embd=width, n_layer=num_layers, n_head=num_heads,
        n_inner=4 * width, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-6, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
        use_cache=False)
    self.model = transformers.GPT2LMHeadModel._from_config(config, attn_implementation="sdpa")

  def forward(self, token_ids):
    return self.model(input_ids=token_ids, use_cache=False).logits  # [batch, length, vocab]


DEFAULT_LAYERS = {"transformer": 4, "lstm": 2, "tcn": 4}


def build_model(arguments) -> nn.Module:
  layers = arguments.layers or DEFAULT_LAYERS[arguments.family]
  if arguments.family == "transformer":
    return GPT2Peer(arguments.vocab, arguments.width, layers, arguments.heads, arguments.length)
  if arguments.family == "lstm":
    return LSTMPeer(arguments.vocab, arguments.width, layers)
  return TCNPeer(arguments.vocab, arguments.width, layers, arguments.kernel_size)


def decayed(name: str, parameter: torch.Tensor) -> bool:
  """jaxlm's decay_mask: matrices only. A weight-norm magnitude is [out, 1, 1] here but a vector
  (tcn.DilatedConv's scale [out]) in jaxlm, so it is exempt too."""
  return parameter.ndim >= 2 and not name.endswith("parametrizations.weight.original0")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--family", choices=("transformer", "lstm", "tcn"), required=True)
  parser.add_argument("--threads", type=int, default=2, help="torch's intra-op threads")
  parser.add_argument("--steps", type=int, default=30, help="timed steps after warm-up")
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--groups", type=int, default=5, help="the timed steps run in this many groups; "
                      "step_seconds is the median of their means (launch/benchmark.py's --trials)")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--vocab", type=int, default=33278)
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--layers", type=int, default=0, help="0: jaxlm's (transformer 4, lstm 2, tcn 4)")
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--kernel_size", type=int, default=3)
  parser.add_argument("--lr", type=float, default=1e-3)
  parser.add_argument("--weight_decay", type=float, default=0.01)
  parser.add_argument("--clip_norm", type=float, default=1.0, help="0: no clipping")
  parser.add_argument("--seed", type=int, default=0)
  arguments = parser.parse_args()
  if arguments.steps < 1 or arguments.groups < 1 or arguments.warmup < 0:
    parser.error("--steps and --groups must be at least 1, --warmup at least 0")

  torch.set_num_threads(arguments.threads)
  torch.manual_seed(arguments.seed)
  model = build_model(arguments)
  model.train()
  named = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
  trained = [parameter for _, parameter in named]
  optimizer = torch.optim.AdamW(
      [{"params": [p for n, p in named if decayed(n, p)], "weight_decay": arguments.weight_decay},
       {"params": [p for n, p in named if not decayed(n, p)], "weight_decay": 0.0}],
      lr=arguments.lr, betas=(0.9, 0.99), eps=1e-8)

  # Windows of length + 1 uniform token ids: inputs and next-token targets, [batch, length] each.
  generator = np.random.default_rng(arguments.seed)
  windows = [torch.from_numpy(generator.integers(0, arguments.vocab, (arguments.batch, arguments.length + 1)))
             for _ in range(arguments.warmup + arguments.steps)]
  batches = [(window[:, :-1].contiguous(), window[:, 1:].contiguous()) for window in windows]

  def step(inputs, targets) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs)  # float32 [batch, length, vocab]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()
    if arguments.clip_norm > 0:
      torch.nn.utils.clip_grad_norm_(trained, arguments.clip_norm)
    optimizer.step()
    return loss.detach()

  for inputs, targets in batches[:arguments.warmup]:
    loss = step(inputs, targets)
  timed = batches[arguments.warmup:]
  groups = max(1, min(arguments.groups, len(timed)))
  bounds = np.linspace(0, len(timed), groups + 1).astype(int)  # every timed step in some group
  group_seconds = []
  for start, end in zip(bounds[:-1], bounds[1:]):
    started = time.perf_counter()
    for inputs, targets in timed[start:end]:
      loss = step(inputs, targets)  # eager CPU work is synchronous: the step is done on return
    group_seconds.append((time.perf_counter() - started) / (end - start))
  loss = float(loss)
  if not np.isfinite(loss):
    raise FloatingPointError(f"torch_peers: {arguments.family} reached loss {loss}")

  step_seconds = float(statistics.median(group_seconds))
  tokens_per_step = arguments.batch * arguments.length
  result = {
      "family": arguments.family,
      "side": "torch",
      "parameters": sum(parameter.numel() for parameter in trained),
      "frozen_parameters": sum(p.numel() for p in model.parameters() if not p.requires_grad),
      "tokens_per_step": tokens_per_step,
      "step_seconds": step_seconds,
      "step_seconds_per_group": group_seconds,
      "tokens_per_second": tokens_per_step / step_seconds,
      "loss": loss,
      "torch": torch.__version__,
      "threads": torch.get_num_threads(),
      "processor": platform.processor() or platform.machine(),
  }
  if arguments.family == "transformer":
    import transformers
    result["transformers"] = transformers.__version__
  print(json.dumps(result))


if __name__ == "__main__":
  main()
