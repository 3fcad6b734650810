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

Not measured yet. Expected: steps about as fast as ru_lm's (the same shapes), and the same
question as ru_lm's with a bidirectional encoder: do FastText starts reach a given validation
masked-token loss in fewer steps than scratch? Only ~10 of every 64 tokens are scored a step,
so every curve should be slower in steps than ru_lm's. A trained workdir is an encoder start
for fine-tuning Russian tasks (config init.checkpoint; configs/finetune.py).

Variants (`--config=configs/ru_mlm.py:input=bpe,body=lstm`): ru_lm's input, init and head,
plus
  body=transformer (default) | lstm | tcn   the encoder (configs/wt2_mlm.py: bidirectional
               attention, a bidirectional LSTM, two-sided dilated convolutions)
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
  if "smoke" in variants:
    common.apply_smoke(config)  # again, for a body that replaced ru_lm's shrunk transformer
  return common.finish(config)
