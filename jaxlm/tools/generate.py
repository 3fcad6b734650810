"""Text from a causal language model's checkpoint: sampling and greedy decoding.

Decoding is incremental by default: the prompt goes through the model once, then each new
token is one single-token step with the body's decode cache (jaxlm/models/__init__.py: the
transformer's keys and values, the LSTM's state, the TCN's convolution inputs), so N tokens
cost N steps whose work does not grow with N beyond attending to the cached keys. With
cache=False every token is one full forward pass over the whole text so far (right-padded
to a fixed length, so it compiles once; causal outputs do not see the padding): the
reference the cached path must equal, and the baseline of BENCHMARKS.md's speed-up.

The next token is drawn from the head's scores at the last position (each head's
next_token_scores, jaxlm.models.heads):
  softmax   its logits;   adaptive   its exact log-probabilities (jaxlm.models.heads.adaptive_softmax);
  vmf       the von Mises-Fisher log-density of each word's unit target vector, up to a
            constant: the predicted vector . unit(target), i.e. kappa * cosine; so temperature 1
            samples the model's own distribution restricted to the vocabulary;
  cosine, l2  the cosine between the predicted and each word's target vector. These heads
            define no distribution over words: greedy decoding picks the nearest word, as
            evaluation's top-1 does (jaxlm.models.heads.ranking); sampling draws from
            softmax(cosine / temperature); cosines lie in [-1, 1], so only a small temperature
            (well below 1) makes near words much likelier than far ones.
Sampling divides the scores by `temperature` (0: greedy, the largest score), then keeps the
`top_k` largest (0: all) and the smallest set of largest whose probabilities reach `top_p`
(1: all); ties at a cut are kept. Token t of every sample is drawn with
fold_in(key(seed), t), so a seed gives the same text with or without the cache.

Prompts are read as the start of a line: the corpus's line-end token (<eos>, or "</s>" for
BPE) comes first, as it precedes every line of the training stream; an empty prompt is
that token alone. Words are split as the corpus was (WikiText/PTB: on spaces; RusLit: the
word tokeniser of jaxlm.data.works), and BPE runs SentencePiece over those words. A word
the vocabulary lacks becomes <unk> (reported in `unknown_words`); with the embedding bag
too, since its rows are the vocabulary's words (n-gram rows are not composed for new words).
Transformer-XL memory is not used in decoding: the key/value cache holds every earlier token
(jaxlm.models.transformer.Transformer.decode). A transformer with learned or sinusoidal
positions has max_length of them (the quickstart: 64); a longer text is read through a
window that slides by half of that (Window), with and without the cache alike.
"""

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlm.models import heads
from jaxlm import checkpoint, errors
from jaxlm.training import evaluate
from jaxlm.data import corpora, works
from jaxlm.data.vocabulary import END_OF_SENTENCE, UNKNOWN

# The most tokens one call generates per sample. A call is one compiled program that returns
# every token at its end (nothing shows before), and a body without a position bound keeps a
# decode cache of the whole text: at the tens of tokens a second a CPU decodes the quickstart
# (BENCHMARKS.md), this many already take minutes. A longer text: continue one, its end as
# the next call's prompt.
MAX_TOKENS = 10_000


@dataclasses.dataclass(frozen=True)
class Sampling:
  temperature: float = 1.0  # 0: greedy
  top_k: int = 0  # 0: no cut
  top_p: float = 1.0  # 1: no cut

  def check(self) -> None:
    if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
      raise errors.ConfigError(f"--temperature={self.temperature} must be >= 0 (0: greedy), --top_k={self.top_k} >= 0 "
                               f"(0: every word) and --top_p={self.top_p} in (0, 1]")


# ----------------------------------------------------------------------------
# Scores and sampling.


def next_token_scores(outputs, head: str):
  """Head outputs at one position (length 1) -> float32 [batch, vocab] scores (the module docstring)."""
  return heads.LANGUAGE_MODEL_HEADS[head].next_token_scores(outputs)


def _at_position(outputs, index, head: str):
  """Head outputs over [batch, length, ...] -> the same structure at position `index` (length 1, may be traced)."""
  return heads.LANGUAGE_MODEL_HEADS[head].at_position(outputs, index)


def sample(scores, key, sampling: Sampling):
  """float32 [batch, vocab] scores -> int32 [batch] token ids (the module docstring's rule)."""
  if sampling.temperature == 0:
    return jnp.argmax(scores, axis=-1).astype(jnp.int32)
  scores = scores / sampling.temperature
  if sampling.top_k:
    kth = jax.lax.top_k(scores, min(sampling.top_k, scores.shape[-1]))[0][..., -1:]  # [batch, 1]
    scores = jnp.where(scores < kth, -jnp.inf, scores)
  if sampling.top_p < 1.0:
    ordered = jnp.sort(scores, axis=-1)[..., ::-1]  # [batch, vocab], largest first
    probabilities = jax.nn.softmax(ordered, axis=-1)
    # A word is kept while the words before it hold less than top_p: the first always is.
    kept = jnp.cumsum(probabilities, axis=-1) - probabilities < sampling.top_p
    threshold = jnp.min(jnp.where(kept, ordered, jnp.inf), axis=-1, keepdims=True)
    scores = jnp.where(scores < threshold, -jnp.inf, scores)
  return jax.random.categorical(key, scores, axis=-1).astype(jnp.int32)


# ----------------------------------------------------------------------------
# Decoding.


@dataclasses.dataclass(frozen=True)
class Window:
  """Which text positions the model reads, fixed before compiling.

  length: the positions one decode cache (or one uncached forward pass) holds. limit: the
  body's decode_limit (a transformer's max_length with learned or sinusoidal positions), None
  when unbounded. Past the limit the window slides by hop = limit // 2: the next token at text
  position t is predicted from text[start(t):t] (start_of below), between limit - hop + 1 and
  limit tokens; the cached path re-reads the last limit - hop tokens into a fresh cache each
  time it is full (one prefill per hop tokens), the uncached path reads the same windows.
  """
  length: int
  limit: int | None
  hop: int

  def start_of(self, position):
    """The first text position read when predicting text position `position` (int or traced)."""
    if self.limit is None:
      return 0
    over = position - self.limit
    if isinstance(over, int):  # a static position: a static start (slices of the prompt)
      return self.hop * max(0, -(-over // self.hop))
    return self.hop * jnp.maximum(0, -(-over // self.hop))  # hop * ceil(over / hop), at least 0


def check_max_tokens(max_tokens: int) -> None:
  if not 1 <= max_tokens <= MAX_TOKENS:
    raise errors.ConfigError(f"--max_tokens={max_tokens} must be between 1 and {MAX_TOKENS} (a call shows its "
                             f"tokens only once all are generated); for a longer text, continue one with its end "
                             f"as --prompt")


def _window(model, prompt_length: int, max_tokens: int) -> Window:
  """The window for a prompt and max_tokens; checks the body can decode (an encoder cannot)."""
  check_max_tokens(max_tokens)
  if prompt_length < 1:
    raise ValueError(f"need a prompt of at least one token (got {prompt_length})")
  fed = prompt_length + max_tokens - 1  # the prompt and every generated token but the last
  limit = model.decode_limit()
  if limit is not None and fed <= limit:
    limit = None  # the whole text fits: no window moves
  window = Window(length=fed if limit is None else limit, limit=limit, hop=max((limit or 0) // 2, 1))
  jax.eval_shape(lambda: model.decode_cache(1, window.length))  # raises the body's own message
  return window


def _cached(model, head, sampling, prompt_length, max_tokens, window, variables, prompt, key):
  """prompt int32 [rows, prompt_length] -> int32 [rows, max_tokens]: one prefill, then single steps."""
  rows = prompt.shape[0]

  def prefill(tokens):  # tokens [rows, n] from the start of a fresh cache -> (outputs, cache)
    return model.apply(variables, tokens, train=False, carry=model.decode_cache(rows, window.length), decode=True)

  start = window.start_of(prompt_length)
  outputs, cache = prefill(prompt[:, start:])
  first = sample(next_token_scores(_at_position(outputs, prompt_length - start - 1, head), head),
                 jax.random.fold_in(key, 0), sampling)
  text = jnp.zeros((rows, prompt_length + max_tokens), jnp.int32)
  text = jax.lax.dynamic_update_slice_in_dim(text, jnp.concatenate([prompt, first[:, None]], axis=1), 0, axis=1)

  def step(carried, index):  # feeds text position prompt_length + index - 1, predicts the next
    text, token, cache, start = carried
    if window.limit is not None:  # a full cache starts again from the window's last limit - hop tokens
      position = prompt_length + index
      def restart(_):
        kept = jax.lax.dynamic_slice_in_dim(text, start + window.hop, window.limit - window.hop, axis=1)
        return prefill(kept)[1], start + window.hop
      cache, start = jax.lax.cond(position - 1 - start == window.limit, restart, lambda _: (cache, start), None)
    outputs, cache = model.apply(variables, token[:, None], train=False, carry=cache, decode=True)
    token = sample(next_token_scores(outputs, head), jax.random.fold_in(key, index), sampling)
    text = jax.lax.dynamic_update_slice_in_dim(text, token[:, None], prompt_length + index, axis=1)
    return (text, token, cache, start), token

  carried = (text, first, cache, jnp.asarray(start, jnp.int32))
  _, rest = jax.lax.scan(step, carried, jnp.arange(1, max_tokens))  # rest [max_tokens - 1, rows]
  return jnp.concatenate([first[:, None], rest.T], axis=1)


def _uncached(model, head, sampling, prompt_length, max_tokens, window, variables, prompt, key):
  """The same tokens, each from a full forward pass over the window of text before it (right-padded)."""
  rows = prompt.shape[0]
  # Room for a window read from any start (the tokens beyond the text are padding, never read).
  text = jnp.zeros((rows, prompt_length + max_tokens + window.length), jnp.int32)
  text = jax.lax.dynamic_update_slice_in_dim(text, prompt, 0, axis=1)

  def step(text, index):  # predicts text position prompt_length + index
    position = prompt_length + index
    start = window.start_of(position)
    outputs, _ = model.apply(variables, jax.lax.dynamic_slice_in_dim(text, start, window.length, axis=1),
                             train=False)
    scores = next_token_scores(_at_position(outputs, position - 1 - start, head), head)
    token = sample(scores, jax.random.fold_in(key, index), sampling)
    return jax.lax.dynamic_update_slice_in_dim(text, token[:, None], position, axis=1), token

  _, tokens = jax.lax.scan(step, text, jnp.arange(max_tokens))  # [max_tokens, rows]
  return tokens.T


@dataclasses.dataclass
class Generated:
  tokens: np.ndarray  # int32 [samples, max_tokens]
  compile_seconds: float
  seconds: float  # generation alone, after compiling

  @property
  def tokens_per_second(self) -> float:
    return self.tokens.size / self.seconds if self.seconds > 0 else float("inf")


def make_decoder(model, *, prompt_length: int, max_tokens: int, head: str, sampling: Sampling = Sampling(),
                 cache: bool = True):
  """A jitted decode(variables, prompt int32 [rows, prompt_length], key) -> int32 [rows, max_tokens].

  model: a jaxlm.models.Model with a causal body; variables: {"params", ...frozen}; head:
  config.model.head (how outputs become scores). cache=False decodes with full forward passes.
  """
  sampling.check()
  window = _window(model, prompt_length, max_tokens)
  decode = _cached if cache else _uncached
  return jax.jit(functools.partial(decode, model, head, sampling, prompt_length, max_tokens, window))


def generate_ids(model, variables, prompt_ids, *, max_tokens: int, head: str, sampling: Sampling = Sampling(),
                 seed: int = 0, num_samples: int = 1, cache: bool = True) -> Generated:
  """`num_samples` continuations of prompt_ids (int [prompt_length], >= 1 token), each max_tokens
  long, timed apart from compiling (make_decoder gives the arguments' meaning)."""
  prompt_ids = np.asarray(prompt_ids, np.int32)
  decode = make_decoder(model, prompt_length=len(prompt_ids), max_tokens=max_tokens, head=head,
                        sampling=sampling, cache=cache)
  device = jax.devices()[0]  # one device: a checkpoint restores replicated over all of them
  variables = jax.device_put(variables, device)
  prompt = jax.device_put(np.tile(prompt_ids[None], (num_samples, 1)), device)
  key = jax.random.key(seed)
  start = time.perf_counter()
  compiled = decode.lower(variables, prompt, key).compile()
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  tokens = np.asarray(jax.block_until_ready(compiled(variables, prompt, key)))
  return Generated(tokens, compile_seconds, time.perf_counter() - start)


# ----------------------------------------------------------------------------
# Text in and out.


@dataclasses.dataclass
class Tokenizer:
  """A run's text <-> ids: its vocabulary, and its SentencePiece model for BPE."""
  words: list
  word_split: str = "spaces"  # "spaces" (WikiText, PTB) | "words" (jaxlm.data.works, RusLit)
  sentencepiece_model: str = ""

  def __post_init__(self):
    self.index = {word: position for position, word in enumerate(self.words)}
    self.processor = None
    if self.sentencepiece_model:
      from jaxlm.data import sentencepiece_tokenizer
      self.processor = sentencepiece_tokenizer.load_sentencepiece(self.sentencepiece_model)

  @property
  def line_end(self) -> int:
    return self.processor.eos_id() if self.processor else self.index[END_OF_SENTENCE]

  def encode(self, prompt: str) -> tuple[list[int], list[str]]:
    """(ids: the line-end token, then the prompt's; the prompt's words the vocabulary lacks)."""
    words = works.tokenise_line(prompt).split() if self.word_split == "words" else prompt.split()
    if self.processor:  # byte fallback: every text encodes
      return [self.line_end] + (self.processor.encode(" ".join(words)) if words else []), []
    unknown = [word for word in words if word not in self.index]
    if unknown and UNKNOWN not in self.index:
      raise errors.ConfigError(f"prompt words {unknown} are not in the run's vocabulary, which has no {UNKNOWN}; "
                               "leave them out")
    return [self.line_end] + [self.index.get(word, self.index.get(UNKNOWN)) for word in words], unknown

  def decode(self, ids) -> str:
    """Ids -> text; the line-end token becomes a newline."""
    lines, line = [], []
    for token in list(ids) + [self.line_end]:
      if token == self.line_end:
        lines.append(self.processor.decode(line) if self.processor else " ".join(self.words[i] for i in line))
        line = []
      else:
        line.append(int(token))
    return "\n".join(lines)


def run_tokenizer(experiment) -> Tokenizer:
  """The tokenizer of a restored causal-LM run (evaluate.restore_workdir's experiment)."""
  data = experiment.config.data
  split = "words" if corpora.CORPORA[data.corpus].format == "works" else "spaces"
  return Tokenizer(list(experiment.task.words), word_split=split,
                   sentencepiece_model=getattr(experiment.task.corpus, "sentencepiece_model", ""))


def sample_workdir(workdir: str, prompt: str = "", *, step: int | None = None, best: bool = False,
                   max_tokens: int = 50, sampling: Sampling = Sampling(), seed: int = 0, num_samples: int = 1,
                   cache: bool = True, data_path: str | None = None) -> dict:
  """Restores a causal-LM workdir's checkpoint (as launch/evaluate.py does) and continues `prompt`.

  Returns {"step", "prompt_tokens", "unknown_words", "samples": [text, ...], "tokens": [[id, ...]],
  "compile_seconds", "seconds", "tokens_per_second"}; each sample's text is the prompt as the
  model read it (unknown words as <unk>) followed by the generated text.
  """
  sampling.check()
  check_max_tokens(max_tokens)  # before the checkpoint is restored
  config_task = _saved_task_name(workdir)
  if config_task != "causal_lm":
    raise errors.WorkdirError(f"{workdir} is a {config_task} run: text generation needs a causal language model "
                              "(task.name=causal_lm)")
  experiment, step, state = evaluate.restore_workdir(workdir, step=step, best=best, data_path=data_path)
  tokenizer = run_tokenizer(experiment)
  prompt_ids, unknown = tokenizer.encode(prompt)
  generated = generate_ids(experiment.model, {"params": state.params, **state.frozen}, prompt_ids,
                           max_tokens=max_tokens, head=experiment.config.model.head, sampling=sampling,
                           seed=seed, num_samples=num_samples, cache=cache)
  return {"step": step, "prompt_tokens": len(prompt_ids), "unknown_words": unknown,
          "samples": [tokenizer.decode(list(prompt_ids[1:]) + list(row)) for row in generated.tokens],
          "tokens": generated.tokens.tolist(), "compile_seconds": generated.compile_seconds,
          "seconds": generated.seconds, "tokens_per_second": generated.tokens_per_second}


def _saved_task_name(workdir: str) -> str:
  config = checkpoint.load_config(workdir)  # a missing or foreign workdir: a UserError naming it
  return config.task.name
