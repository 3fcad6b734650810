"""Tiny fine-tuning datasets written into a test's folder: a RuCoLA-shaped CSV and a CoNLL-U treebank.

The labels follow a rule a small model can learn (a sentence is "acceptable" when it
holds the word "да"; a word's tag is decided by its last letter), so training that
works shows it in a few dozen steps.
"""

import csv
import os

import numpy as np

WORDS = ["кот", "пёс", "дом", "лес", "река", "гора", "да", "нет", "идёт", "спит", "бежит", "ест"]
TAG_OF_LAST_LETTER = {"т": "VERB", "с": "NOUN", "м": "NOUN", "а": "NOUN", "й": "ADJ"}


def _sentence(rng, length):
  return [WORDS[index] for index in rng.integers(0, len(WORDS), size=length)]


def write_classification(folder: str, *, seed: int = 0, sizes=(120, 30, 20, 10)) -> str:
  """train.csv / dev.csv / ood.csv (labelled) and test.csv (unlabelled): id,sentence,acceptable."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  for name, size in zip(("train", "dev", "ood", "test"), sizes):
    with open(os.path.join(folder, f"{name}.csv"), "w", encoding="utf-8", newline="") as handle:
      writer = csv.writer(handle)
      writer.writerow(["id", "sentence"] + ([] if name == "test" else ["acceptable"]))
      for index in range(size):
        words = _sentence(rng, int(rng.integers(2, 9)))
        text = " ".join(words).capitalize() + "."
        label = ["1" if "да" in words else "0"]
        writer.writerow([str(index), text] + ([] if name == "test" else label))
  return folder


def write_treebank(folder: str, *, seed: int = 0, sizes=(60, 20, 20)) -> str:
  """train.conllu / dev.conllu / test.conllu with UPOS by each word's last letter."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  for name, size in zip(("train", "dev", "test"), sizes):
    with open(os.path.join(folder, f"{name}.conllu"), "w", encoding="utf-8") as handle:
      for index in range(size):
        words = _sentence(rng, int(rng.integers(2, 9)))
        handle.write(f"# sent_id = {name}-{index}\n# text = {' '.join(words)}\n")
        for position, word in enumerate(words, start=1):
          tag = TAG_OF_LAST_LETTER.get(word[-1], "PART")
          handle.write(f"{position}\t{word}\t{word}\t{tag}\t_\t_\t0\tdep\t_\t_\n")
        handle.write("\n")
  return folder


def finetune_config(arg: str, folder: str, **overrides):
  """configs/finetune.py:<arg>,smoke pointed at `folder`, with dotted-key overrides."""
  from configs import finetune
  config = finetune.get_config(arg + ",smoke")
  config.task.path = folder
  if config.task.name == "classification":  # configs/finetune.py:task=rucola's splits
    files = {"train": "train.csv", "valid": "dev.csv", "valid_out_of_domain": "ood.csv", "test": "test.csv"}
  else:
    files = {"train": "train.conllu", "valid": "dev.conllu", "test": "test.conllu"}
  for split, name in files.items():
    config.task.files[split] = name
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config
