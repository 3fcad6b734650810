"""Russian masked-LM pre-training on RusLit: configs/ru_lm.py's runs with BERT's objective.

Everything is configs/ru_lm.py's (its variants input=word|bag|bpe, init=scratch|fasttext|
frozen and head=..., its 32,000-word or -piece vocabulary, the width-128 2-layer model,
16 x 64 tokens a step, 1,000 steps; read its docstring for the reasons), but the task is
jaxlm.tasks.masked_lm and the body an encoder (model.<family>.causal=False): 15% of each
window's tokens are chosen (80% of those -> <mask>, 10% -> a random word, 10% kept) and
only those are scored. The vocabulary gains <mask> last (id 32,000), so every corpus id
keeps its meaning and ru_lm's FastText file fits (<mask> gets a vector composed from its
n-grams, or a random one).

Commands, from the repository root (RusLit is never shipped; give its folder). The FastText
file of configs/ru_lm.py's step 1 serves unchanged (same data and tokenisation):
  python launch/train.py --config=configs/ru_mlm.py:input=bag,init=fasttext \
      --config.data.path=../shared/data/ruslit --config.model.fasttext_path=runs/ru_lm/fasttext.bin \
      --workdir=runs/ru_mlm/bag_fasttext
  python launch/evaluate.py --workdir=runs/ru_mlm/bag_fasttext --best --split=test
Embedding heads (head=cosine|l2|vmf) also need --config.model.target_vectors=runs/ru_lm/fasttext.bin.

Measured (BENCHMARKS.md, 2-core CPU, input=bag,init=fasttext, 1,000 steps):
masked-token validation perplexity 457 (transformer at its lr 1e-3, ~5 minutes; 546-560 at
ru_lm's 3e-3), 400 (body=lstm, ~4) and 349 (body=tcn, ~4), none converged. The BiLSTM and TCN
train at ru_lm's 3e-3 (not probed). With input=bag the bag's n-gram buckets are updated lazily
(optim.embedding_updates="lazy": only those a batch reads; the word rows, which the tied head
reads, at every step): 1.2-1.4x the tokens/s of dense AdamW, the same masked perplexity at 1,000
steps of the transformer (455 against 457). Scratch starts were not run. The masked-LM step with
an embedding head runs 7-8x the softmax head's tokens/s at 32k words, 20x at 250k, in
about a third of its compiled memory (120 vs 352 MiB at 32k, 737 vs 2,474 MiB at 250k). A
trained workdir is an encoder start for fine-tuning Russian tasks (config
init.checkpoint; configs/finetune.py), whose encoders have the same shapes.

Variants (`--config=configs/ru_mlm.py:input=bpe,body=lstm`): ru_lm's input, init and head,
plus
  body=transformer (default) | lstm | tcn   the encoder (common.use_small_encoder:
               bidirectional attention, a bidirectional LSTM, two-sided dilated convolutions)
  smoke        seconds on a CPU once the corpus is cached
"""

from configs import common, ru_lm, wt2_mlm


def get_config(arg: str | None = None):
  variants = common.parse_variants(arg)
  common.check_variants(variants, {"input": tuple(ru_lm.INPUTS), "init": ru_lm.INITS, "head": ru_lm.HEADS,
                                   "body": wt2_mlm.BODIES, "smoke": True}, __file__)
  body = variants.pop("body", "transformer")
  config = ru_lm.get_config(",".join(key if value is True else f"{key}={value}"
                                     for key, value in variants.items()))
  config.unlock()  # the task and body sections are replaced below; finish() locks again
  common.use_task(config, "masked_lm")
  common.use_small_encoder(config, body)
  if body == "transformer":
    # Positions for fine-tuning's longer sentences (configs/finetune.py reads this encoder):
    # the learned position table must have the same rows in both.
    config.model.transformer.max_length = 128
    # ru_lm's 3e-3 is the causal LM's rate; the masked LM scores 15% of the tokens a step, and at
    # 3e-3 its transformer stalls near 13% masked-word accuracy. 1,000 steps of input=bag,init=fasttext:
    # masked perplexity 644 / 560 / 457 / 474 for lr 1e-2 / 3e-3 / 1e-3 / 3e-4. On the converged grid's
    # 10,000-step schedule, 242 at step 3,000 against 469 at 3e-3 (BENCHMARKS.md).
    config.optim.lr = 1e-3
  if config.model.input == "bag":
    # Lazy AdamW on the bag's n-gram buckets (the tied adaptive head reads every word row, so those
    # are updated at every step as by AdamW): 1,000 steps of the transformer from FastText reach
    # masked perplexity 455 against dense's 457, at 1.2x the tokens/s (BiLSTM 1.4x, TCN 1.2x; BENCHMARKS.md).
    config.optim.embedding_updates = "lazy"
  if "smoke" in variants:
    common.apply_smoke(config)  # again, for a body that replaced ru_lm's shrunk transformer
  return common.finish(config)
