"""Pins what every config's smoke variant trains and scores, so moving code moves no result.

Each case trains a config's smoke variant (and the variants that choose another body, input,
head or task) for 4 steps on the tests' fixture data, logging every 2 steps and validating at
step 4, and compares the logged losses and the validation's numbers with those recorded in
tests/pinned_configs.json (on the pinned jax, CPU, one device). A refactor that changes none
of the arithmetic keeps them to float rounding; one that changes a data order, a random draw,
an initialisation or a loss moves them.

To record them again after a deliberate change of results, and say why in the commit:
  JAXLM_RECORD_PINS=1 .venv/bin/python -m pytest -q tests/test_pinned_configs.py -p no:xdist
"""

import importlib
import json
import math
import os
import shutil

import numpy as np
import pytest

from conftest import REPO_ROOT, override
from jaxlm import metrics
from task_fixtures import finetune_config, write_classification, write_squad, write_treebank

PINS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pinned_configs.json")
RECORD = os.environ.get("JAXLM_RECORD_PINS", "") not in ("", "0")
STEPS = {"train.steps": 4, "train.log_every": 2, "train.eval_every": 4}

# (config file, variants): language models read the tiny corpus (PTB's files under its names,
# RusLit's shipped sample), fine-tuning variants the task fixtures.
LANGUAGE_MODELS = [
    ("quickstart", "smoke"), ("wt2_transformer", "smoke"), ("wt2_transformer", "smoke,positions=rotary"),
    ("wt2_lstm", "smoke"), ("wt2_tcn", "smoke"), ("wt2_families", "smoke,family=lstm"),
    ("wt2_families", "smoke,family=tcn"), ("wt2_heads", "smoke,head=cosine"), ("wt2_heads", "smoke,head=vmf"),
    ("wt2_mlm", "smoke"), ("wt2_mlm", "smoke,body=lstm"), ("wt2_mlm", "smoke,body=tcn"),
    ("ptb_lstm", "smoke"), ("ptb_tcn", "smoke"), ("ru_lm", "smoke"), ("ru_lm", "smoke,input=bag"),
    ("ru_mlm", "smoke"),
]
FINE_TUNING = [
    "task=rucola,body=transformer", "task=rucola,body=lstm", "task=rucola,body=tcn", "task=rucola,body=fasttext",
    "task=upos,body=transformer", "task=upos,body=lstm",
    "task=xquad_ru,body=transformer",
]
CASES = [f"{name}:{variants}" for name, variants in LANGUAGE_MODELS] + [f"finetune:{arg}" for arg in FINE_TUNING]


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_corpus):
  root = tmp_path_factory.mktemp("pinned_data")
  ptb = root / "ptb"
  ptb.mkdir()
  for split in ("train", "valid", "test"):
    shutil.copyfile(os.path.join(tiny_corpus, f"{split}.txt"), ptb / f"ptb.{split}.txt")
  return {"root": str(root), "corpus": tiny_corpus, "ptb": str(ptb), "ruslit": os.path.join(REPO_ROOT, "jaxlm", "data", "ruslit-sample"),
          "sentences": write_classification(str(root / "sentences")),
          "treebank": write_treebank(str(root / "treebank")), "squad": write_squad(str(root / "squad"))}


def case_config(case: str, data: dict, cache: str):
  name, variants = case.split(":", 1)
  if name == "finetune":
    task = variants.split(",")[0].split("=")[1]
    folder = {"rucola": "sentences", "upos": "treebank", "xquad_ru": "squad"}[task]
    config = finetune_config(variants, data[folder])
  else:
    config = importlib.import_module(f"configs.{name}").get_config(variants)
    config.data.path = data["ptb"] if name.startswith("ptb") else data["ruslit"] if name.startswith("ru_") \
        else data["corpus"]
    config.data.cache_dir = cache
    config.train.eval_tokens = 0
    if config.model.get("target_vectors"):  # an embedding head's targets: the fixture's vectors
      config.model.target_vectors = write_vectors(data["root"], config.model.target_dim)
  return override(config, **STEPS)


def write_vectors(root: str, dim: int) -> str:
  """A text .vec with a fixed random dim-d vector for every word of the tiny corpus."""
  path = os.path.join(root, f"tiny{dim}.vec")
  if not os.path.exists(path):
    words = [f"w{index}" for index in range(60)]
    rows = np.random.default_rng(1).standard_normal((len(words), dim)).astype(np.float32)
    with open(path, "w", encoding="utf-8") as handle:
      handle.write(f"{len(words)} {dim}\n" + "".join(
          word + " " + " ".join(f"{value:.6f}" for value in row) + "\n" for word, row in zip(words, rows)))
  return path


def observed(workdir: str) -> dict:
  """The run's logged train losses and its validation's numbers (floats only)."""
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train_losses = {str(record["step"]): record["loss"] for record in records if record["kind"] == "train"}
  [valid] = [record for record in records if record["kind"] == "valid"]
  scores = {key: value for key, value in valid.items()
            if isinstance(value, float) and key not in metrics.CLOCK_KEYS and math.isfinite(value)}
  return {"train_loss": train_losses, "valid": scores}


def load_pins() -> dict:
  if not os.path.exists(PINS_FILE):
    return {}
  with open(PINS_FILE) as handle:
    return json.load(handle)


@pytest.mark.parametrize("case", CASES)
def test_a_smoke_variant_trains_and_scores_as_pinned(case, data, cache_dir, tmp_path):
  from jaxlm.training import loop
  config = case_config(case, data, cache_dir)
  loop.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  found = observed(str(tmp_path / "run"))
  if RECORD:
    pins = load_pins()
    pins[case] = found
    with open(PINS_FILE, "w") as handle:
      json.dump(dict(sorted(pins.items())), handle, indent=1)
      handle.write("\n")
    return
  pinned = load_pins().get(case)
  assert pinned is not None, f"{case} has no pinned numbers: record them (see this module's docstring)"
  assert sorted(found["train_loss"]) == sorted(pinned["train_loss"])
  np.testing.assert_allclose([found["train_loss"][step] for step in sorted(pinned["train_loss"])],
                             [pinned["train_loss"][step] for step in sorted(pinned["train_loss"])], rtol=2e-6)
  assert sorted(found["valid"]) == sorted(pinned["valid"])
  for key in sorted(pinned["valid"]):
    # An embedding head's accuracies are nearest-neighbour decisions among the fixture's random
    # vectors, some of them near-ties that the CPU's float rounding decides: 2 of 309 tokens
    # flipped between the Intel machine the pins were recorded on and an AMD EPYC, with every
    # loss equal to 2e-6. Such accuracies may differ by 1 point (3 tokens); losses pin the arithmetic.
    neighbour_decided = key.startswith("accuracy") and bool(config.model.get("target_vectors"))
    np.testing.assert_allclose(found["valid"][key], pinned["valid"][key], rtol=2e-6,
                               atol=0.01 if neighbour_decided else 1e-9, err_msg=f"{case}: valid {key}")
