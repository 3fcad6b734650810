"""Text generation (jaxlm.tools.generate): incremental decoding equals full forward passes, seeds
reproduce, prompts map to the run's vocabulary, and bad workdirs fail clearly."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT, smoke_config, write_tiny_corpus
from jaxlm.models import heads
from jaxlm.tools import generate
from tests.model_helpers import VOCAB, build, model_config

# Causal bodies with every kind of position and state, tiny. Absolute positions cover PROMPT +
# TOKENS - 1 = 15 fed positions.
BODIES = {
    "transformer_learned": ("transformer", dict(num_layers=2, num_heads=2, positions="learned", max_length=16)),
    "transformer_sinusoidal_window": ("transformer", dict(num_layers=2, num_heads=2, positions="sinusoidal",
                                                          max_length=16, attention_window=3)),
    # Transformer-XL's config: relative positions and memory (decoding uses the cache instead).
    "transformer_relative_memory": ("transformer", dict(num_layers=2, num_heads=2, positions="relative",
                                                        memory_length=4)),
    # RoPE with memory (the fused attention path's positions); decoding rotates the new tokens at their positions.
    "transformer_rotary_memory": ("transformer", dict(num_layers=2, num_heads=2, positions="rotary",
                                                      memory_length=4)),
    "lstm": ("lstm", dict(num_layers=2, hidden_size=24)),
    "tcn": ("tcn", dict(num_layers=3, hidden_size=24, kernel_size=3)),
}
PROMPT, TOKENS = 4, 12


def model_and_variables(name: str, head: str = "softmax"):
  """A tiny random-init model, its parameters scaled up so that outputs depend clearly on context."""
  family, body = BODIES[name]
  # The LSTM reads an embedding bag, whose word rows live in the "frozen" collection.
  config = model_config(family, input_layer="bag" if family == "lstm" else "word", **body)
  config.head = head
  config.adaptive_cutoffs = (20, 40)
  config.target_dim = 8
  from jaxlm.models import build_model
  model = build_model(config, VOCAB)
  variables = model.init(jax.random.key(0), jnp.zeros((1, PROMPT), jnp.int32), train=False)
  variables = dict(variables, params=jax.tree.map(lambda leaf: leaf * 3, variables["params"]))
  return model, variables


def prompt_ids():
  return np.asarray(jax.random.randint(jax.random.key(1), (PROMPT,), 0, VOCAB), np.int32)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_decoding_step_by_step_gives_the_states_of_one_pass(name):
  """A prefix then single tokens through the decode cache = one call over the whole sequence."""
  family, body = BODIES[name]
  model = build(family, **body)
  token_ids = jax.random.randint(jax.random.key(2), (2, 12), 0, VOCAB)
  params = model.init(jax.random.key(0), token_ids, train=False)["params"]
  params = jax.tree.map(lambda leaf: leaf * 3, params)
  whole, _ = jax.jit(functools.partial(model.apply, train=False))({"params": params}, token_ids)
  decode = jax.jit(functools.partial(model.apply, train=False, decode=True))  # compiles for 5 tokens and for 1
  cache = model.decode_cache(2, 12)
  pieces = []
  for start, end in [(0, 5)] + [(t, t + 1) for t in range(5, 12)]:
    outputs, cache = decode({"params": params}, token_ids[:, start:end], carry=cache)
    pieces.append(outputs)
  # In units of the logits' spread (a TCN's are ~1e-4 at init), so the tolerance means the same for all.
  spread = float(jnp.std(whole))
  np.testing.assert_allclose(np.concatenate(pieces, axis=1) / spread, whole / spread, atol=1e-4)


@pytest.mark.parametrize("name", ["transformer_learned", "transformer_relative_memory", "transformer_rotary_memory",
                                  "lstm", "tcn"])
def test_cached_and_uncached_decoding_give_the_same_tokens(name):
  model, variables = model_and_variables(name)
  for sampling in (generate.Sampling(temperature=0.0), generate.Sampling(temperature=1.0, top_k=20, top_p=0.95)):
    tokens = [generate.generate_ids(model, variables, prompt_ids(), max_tokens=TOKENS, head="softmax",
                                    sampling=sampling, seed=3, num_samples=2, cache=cache).tokens
              for cache in (True, False)]
    np.testing.assert_array_equal(tokens[0], tokens[1])
    assert tokens[0].shape == (2, TOKENS)
    if sampling.temperature == 0:
      np.testing.assert_array_equal(tokens[0][0], tokens[0][1])  # greedy rows agree
    else:
      assert not np.array_equal(tokens[0][0], tokens[0][1])  # sampled rows differ


@pytest.mark.parametrize("prompt_length", [PROMPT, 21])
def test_past_max_length_the_window_slides_alike_with_and_without_the_cache(prompt_length):
  """Learned positions exist for 16 tokens; 30 more tokens slide the window 8 at a time, and a
  21-token prompt starts beyond them."""
  model, variables = model_and_variables("transformer_learned")
  prompt = np.asarray(jax.random.randint(jax.random.key(1), (prompt_length,), 0, VOCAB), np.int32)
  sampling = generate.Sampling(temperature=1.0, top_k=20)
  tokens = [generate.generate_ids(model, variables, prompt, max_tokens=30, head="softmax", sampling=sampling,
                                  seed=3, num_samples=2, cache=cache).tokens for cache in (True, False)]
  np.testing.assert_array_equal(tokens[0], tokens[1])
  window = generate._window(model, prompt_length, 30)
  assert (window.length, window.limit, window.hop) == (16, 16, 8)
  assert [window.start_of(position) for position in (16, 17, 24, 25, 33)] == [0, 8, 8, 16, 24]


def test_a_seed_reproduces_its_text_and_another_seed_does_not():
  model, variables = model_and_variables("lstm")
  decode = generate.make_decoder(model, prompt_length=PROMPT, max_tokens=TOKENS, head="softmax",
                                 sampling=generate.Sampling(temperature=1.5))
  prompt = jnp.asarray(prompt_ids()[None])
  first, again, other = (np.asarray(decode(variables, prompt, jax.random.key(seed))) for seed in (7, 7, 8))
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


def test_greedy_decoding_of_every_head_is_its_top_word():
  """adaptive: its exact log-probabilities; embedding heads: the nearest target by cosine (vMF:
  the same argmax, since kappa > 0 scales every word's cosine alike)."""
  for head in ("adaptive", "cosine", "vmf"):
    model, variables = model_and_variables("lstm", head=head)
    if head != "adaptive":
      table = jax.random.normal(jax.random.key(4), (VOCAB, 8))
      variables = dict(variables, frozen={**variables["frozen"], "head": {"target_table": table}})
    outputs, _ = model.apply(variables, jnp.asarray(prompt_ids()[None]), train=False)
    at_last = generate._at_position(outputs, PROMPT - 1, head)
    scores = generate.next_token_scores(at_last, head)  # [1, vocab]
    assert scores.shape == (1, VOCAB)
    if head == "adaptive":
      np.testing.assert_allclose(jax.nn.logsumexp(scores, axis=-1), 0.0, atol=1e-5)  # a distribution
    top = heads.LANGUAGE_MODEL_HEADS[head].top_words(at_last, k=1, chunk_size=8192)[:, 0, 0]
    np.testing.assert_array_equal(generate.sample(scores, None, generate.Sampling(temperature=0.0)), top)


def test_top_k_and_top_p_cut_the_tail():
  scores = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
  keys = jax.random.split(jax.random.key(0), 400)
  draw = lambda sampling: np.asarray(jax.vmap(lambda key: generate.sample(scores, key, sampling))(keys))
  assert set(draw(generate.Sampling(top_k=2)).ravel()) == {0, 1}
  assert set(draw(generate.Sampling(top_p=0.7)).ravel()) == {0, 1}  # 0.5 < 0.7 <= 0.8
  assert set(draw(generate.Sampling(top_p=0.01)).ravel()) == {0}
  assert set(draw(generate.Sampling()).ravel()) == {0, 1, 2, 3}
  with pytest.raises(ValueError, match="top_p"):
    generate.Sampling(top_p=0.0).check()


def test_prompts_start_at_a_line_end_and_unknown_words_become_unk():
  tokenizer = generate.Tokenizer(["<eos>", "the", "cat", "<unk>"])
  assert tokenizer.encode("") == ([0], [])
  assert tokenizer.encode("the dog cat") == ([0, 1, 3, 2], ["dog"])
  assert tokenizer.decode([1, 2, 0, 3]) == "the cat\n<unk>"
  with pytest.raises(ValueError, match="<unk>"):
    generate.Tokenizer(["<eos>", "the"]).encode("the dog")


def test_bpe_prompts_are_pieces_after_the_line_end_and_decode_back(tmp_path):
  from jaxlm.data import sentencepiece_tokenizer
  text = tmp_path / "train.txt"
  text.write_text("the cat sat on the mat\nа кошка спит\n" * 50, encoding="utf-8")
  path = sentencepiece_tokenizer.train_sentencepiece(str(text), vocab_size=300)
  pieces = sentencepiece_tokenizer.pieces_of(sentencepiece_tokenizer.load_sentencepiece(path))
  tokenizer = generate.Tokenizer(pieces, sentencepiece_model=path)
  ids, unknown = tokenizer.encode("the  cat 🦔")  # words as the corpus splits them; byte fallback
  assert ids[0] == pieces.index("</s>") and unknown == []
  assert tokenizer.decode(ids[1:] + [ids[0]] + ids[1:3]) == "the cat 🦔\n" + tokenizer.decode(ids[1:3])
  assert tokenizer.encode("") == ([ids[0]], [])


def test_encoders_are_refused_before_compiling():
  model = build("transformer", causal=False)
  with pytest.raises(ValueError, match="encoder"):
    generate.make_decoder(model, prompt_length=PROMPT, max_tokens=4, head="softmax")


def test_bad_workdirs_fail_with_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="is .* a jaxlm workdir"):
    generate.sample_workdir(str(tmp_path / "missing"), "the")
  (tmp_path / "config.json").write_text(json.dumps({"task": {"name": "masked_lm"}, "train": {}, "model": {}}))
  with pytest.raises(ValueError, match="causal language model"):
    generate.sample_workdir(str(tmp_path), "the")


@pytest.mark.slow
def test_sample_launcher_on_a_trained_smoke_run(cache_dir, tmp_path):
  """Train the quickstart smoke config, then launch/sample.py with and without the cache."""
  from jaxlm.training import loop
  corpus = write_tiny_corpus(str(tmp_path / "corpus"))
  with open(os.path.join(corpus, "train.txt"), "a", encoding="utf-8") as handle:
    handle.write(" w1 <unk> w2 \n")  # WikiText's own <unk>, which unknown prompt words become
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(smoke_config(corpus, cache_dir), workdir, progress=False)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  outputs = []
  for cache_flag in ("--cache", "--nocache"):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "launch", "sample.py"), f"--workdir={workdir}",
         "--prompt=w1 w2 nonword", "--max_tokens=6", "--seed=5", "--top_k=10", cache_flag],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nonword" in result.stderr and "<unk>" in result.stderr  # the notice
    outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
  assert outputs[0]["tokens"] == outputs[1]["tokens"]
  assert len(outputs[0]["tokens"][0]) == 6
  assert outputs[0]["samples"][0].startswith("w1 w2 <unk>")
  missing = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "launch", "sample.py"),
                            f"--workdir={tmp_path / 'missing'}"], env=env, capture_output=True, text=True,
                           timeout=120)
  assert missing.returncode != 0 and "Traceback" not in missing.stderr
  assert "jaxlm workdir" in missing.stderr
