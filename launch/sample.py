"""Generates text from a causal language model's checkpoint (any body, input and head).

  python launch/sample.py --workdir=runs/quickstart --prompt="The game was" --max_tokens=40
  python launch/sample.py --workdir=runs/quickstart --prompt="The game was" --greedy
  python launch/sample.py --workdir=runs/quickstart --prompt="" --temperature=0.8 --top_p=0.9 --seed=1 --num_samples=3
  python launch/sample.py --workdir=runs/quickstart --prompt="The game was" --nocache   # full forward passes

Prints each sample (the prompt as the model read it, then the generated text), then one JSON
line with the tokens and the speed. The same --seed gives the same text, with or without the
cache. Scoring rules per head, tokenisation and <unk>: jaxlm/tools/generate.py.
"""

import _huge_pages  # noqa: F401  (first: restarts the process with malloc on huge pages)
import json
import sys

import _config_flags
import _path  # noqa: F401  (repository root on sys.path)
import _workdir_flags
from absl import app, flags, logging

from jaxlm import errors
from jaxlm.tools import generate

_PROMPT = flags.DEFINE_string("prompt", "", "Text to continue; empty: start from the line-end token <eos>.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", 50, f"Tokens to generate per sample, at most {generate.MAX_TOKENS} "
                                   "(printed once all are generated).")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Divides the scores before sampling; 0 = greedy.")
_GREEDY = flags.DEFINE_bool("greedy", False, "The highest-scoring token every step (same as --temperature=0).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k highest-scoring tokens; 0 = all.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sample among the fewest top tokens whose probability reaches p; 1 = all.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed: the same seed gives the same text.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Continuations of the prompt, drawn together.")
_CACHE = flags.DEFINE_bool("cache", True, "Decode incrementally (one step per token); --nocache runs a "
                           "full forward pass over the text for every token (the same tokens, slower).")
_DATA_PATH = flags.DEFINE_string("data_path", None, "Override config.data.path (workdir moved machines).")


@errors.one_line("launch/sample.py")
def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  choice = _workdir_flags.checkpoint_choice()
  sampling = generate.Sampling(temperature=0.0 if _GREEDY.value else _TEMPERATURE.value, top_k=_TOP_K.value,
                               top_p=_TOP_P.value)
  result = generate.sample_workdir(_workdir_flags.WORKDIR.value, _PROMPT.value, **choice,
                                   max_tokens=_MAX_TOKENS.value, sampling=sampling, seed=_SEED.value,
                                   num_samples=_NUM_SAMPLES.value, cache=_CACHE.value, data_path=_DATA_PATH.value)
  if result["unknown_words"]:
    print(f"notice: {len(result['unknown_words'])} prompt word(s) not in the run's vocabulary became <unk>: "
          f"{', '.join(repr(word) for word in result['unknown_words'])}", file=sys.stderr)
  for index, text in enumerate(result["samples"]):
    print(f"--- sample {index + 1} (step {result['step']}, seed {_SEED.value}) ---\n{text}")
  print(f"{len(result['samples']) * _MAX_TOKENS.value} tokens in {result['seconds']:.2f} s "
        f"({result['tokens_per_second']:.1f} tokens/s, {'cached' if _CACHE.value else 'uncached'}; "
        f"compiling took {result['compile_seconds']:.1f} s)", file=sys.stderr)
  print(json.dumps(result, ensure_ascii=False))  # machine-readable, last


if __name__ == "__main__":
  app.run(main, flags_parser=_config_flags.parse_flags("launch/sample.py", None))
