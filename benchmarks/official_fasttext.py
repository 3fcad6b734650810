"""The official fastText (Facebook's C++ library, supervised mode, default settings) on jaxlm's
classification tasks: the reference beside jaxlm's FastText-baseline rows (`body=fasttext`).

Runs in its own virtual environment, never jaxlm's (benchmarks/fasttext-requirements.txt):

  python3.11 -m venv /work/fasttext-venv
  # fasttext 0.9.2's setup.py imports pybind11 (it declares no build requirements): the build
  # tools go in first and the package is built against them, without build isolation.
  /work/fasttext-venv/bin/pip install pybind11==3.1.0 setuptools==65.5.0 wheel==0.48.0
  /work/fasttext-venv/bin/pip install --no-build-isolation -r benchmarks/fasttext-requirements.txt
  /work/fasttext-venv/bin/python benchmarks/official_fasttext.py --task=sst2 \
      --data=../shared/data/sst2 --seeds=0,1,2 --threads=2
  /work/fasttext-venv/bin/python benchmarks/official_fasttext.py --task=rucola \
      --data=../shared/data/rucola --seeds=0,1,2 --threads=2
  # each seed twice, on two threads and on one: is a run repeatable, and what does the
  # second thread save?
  /work/fasttext-venv/bin/python benchmarks/official_fasttext.py --task=sst2 \
      --data=../shared/data/sst2 --seeds=0,1,2 --repeats=2 --threads=2   # then --threads=1

"Defaults" are `fasttext.train_supervised`'s own: 5 epochs, learning rate 0.1 (decayed
linearly to 0), dimension 100, word n-grams 1 (words only), minCount 1, no character n-grams
(minn = maxn = 0), softmax loss, lrUpdateRate 100. Only `thread` and `seed` are set, and
`verbose=0`, which silences the progress line and changes nothing else. Each dev sentence
gets the single most probable label (`predict`, k=1).

Why fastText 0.9.2, not 0.9.3: both initialise the word vectors in ten blocks of rows and fill
only the first `thread` blocks (a known upstream quirk), so with 2 threads 80% of the rows
start at zero in 0.9.2. 0.9.3 moved the matrix to an uninitialised aligned buffer, so those
rows start as whatever the memory held: on this machine SST-2 and RuCoLA runs failed at random
with "Encountered NaN", and the runs that finished had started from those values. The zero
start, and the share of rows drawn at random changing with `thread`, is the official library's
behaviour and stays. So does its seeding: block b's generator is std::minstd_rand(seed + b),
which treats 0 as 1, so seeds 0 and 1 draw the same first block (on one thread, the same model).

The texts are read and tokenised by jaxlm's own code, imported from this checkout (those
modules need only the standard library and numpy, so they import here without jax): the files by
jaxlm.data.labelled_text, as the classification task reads them; SST-2's words by splitting
on whitespace (configs/finetune.py: tokenizer="whitespace"), RuCoLA's by jaxlm's word
tokeniser (the task's default tokenizer="words": jaxlm.data.works.tokenise_line, stress marks
removed, lowercased, punctuation split off). The words go to fastText joined by single spaces
after a `__label__<label>` prefix, so fastText's own split on spaces gives jaxlm's tokens back.
Both see whole sentences (no sentence of either task is longer than jaxlm's task.max_length,
48 tokens for RuCoLA and 64 for SST-2, start token included). One difference remains: fastText
drops a dev word that training lacks (no character n-grams by default), where jaxlm's bag
composes it from n-grams.

Output: one JSON line per training run (task, seed, repeat, threads, training seconds
measured around `train_supervised` alone, which includes reading the file and building the
dictionary, dev accuracy and Matthews correlation, and for RuCoLA the out-of-domain dev's too),
then a summary line with each metric's mean and sample standard deviation over the runs.
fastText's Hogwild training on more than one thread is not repeatable even with a fixed seed;
`dev_predictions_sha256` tells whether two runs predicted exactly the same labels.
"""

import argparse
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time

import fasttext
import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# jaxlm is not installed in this environment: its reader and tokeniser come from the checkout.
sys.path.insert(0, REPOSITORY)
from jaxlm.data import labelled_text, works  # pylint: disable=wrong-import-position

LABEL_PREFIX = "__label__"  # fastText's default `label` argument
POSITIVE_LABEL = "1"  # both tasks' labels are "0" / "1"; binary MCC is the same whichever is positive

# The fields of configs/finetune.py's TASKS that decide what fastText reads: copied rather
# than imported, since the config module needs ml_collections and jax.
TASKS = {
    "sst2": dict(files=dict(train="train.tsv", dev="dev.tsv"),
                 text_column="sentence", label_column="label", tokenizer="whitespace"),
    "rucola": dict(files=dict(train="in_domain_train.csv", dev="in_domain_dev.csv",
                              out_of_domain_dev="out_of_domain_dev.csv"),
                   text_column="sentence", label_column="acceptable", tokenizer="words"),
}


def words_of(text: str, tokenizer: str) -> list[str]:
  """jaxlm's words of a sentence (jaxlm.tasks.text_inputs.split_text, which imports jax)."""
  return text.split() if tokenizer == "whitespace" else works.tokenise_line(text).split()


def read_split(path: str, task: dict) -> tuple[list[str], list[str]]:
  """(each sentence's words joined by single spaces, each label) of one labelled file."""
  examples = labelled_text.read_labelled_text(path, text_column=task["text_column"],
                                              label_column=task["label_column"])
  return [" ".join(words_of(example.text, task["tokenizer"])) for example in examples], \
         [example.label for example in examples]


def scores(true_labels: list[str], predicted_labels: list[str]) -> dict:
  """Accuracy and binary Matthews correlation from the confusion counts (0 when a row or
  column of the confusion matrix is empty, as jaxlm.tasks.scores reports it)."""
  truth = np.array(true_labels) == POSITIVE_LABEL
  predicted = np.array(predicted_labels) == POSITIVE_LABEL
  true_positive = float(np.sum(truth & predicted))
  true_negative = float(np.sum(~truth & ~predicted))
  false_positive = float(np.sum(~truth & predicted))
  false_negative = float(np.sum(truth & ~predicted))
  denominator = np.sqrt((true_positive + false_positive) * (true_positive + false_negative)
                        * (true_negative + false_positive) * (true_negative + false_negative))
  mcc = 0.0 if denominator == 0 else (true_positive * true_negative - false_positive * false_negative) / denominator
  return dict(accuracy=(true_positive + true_negative) / len(truth), mcc=float(mcc))


def predict(model, texts: list[str]) -> list[str]:
  """The most probable label of each text, without the prefix. A list goes in one call:
  fastText's one-string predict (0.9.2 and 0.9.3) calls np.array(copy=False), which numpy 2 refuses."""
  labels, _ = model.predict(texts, k=1)
  return [label[0][len(LABEL_PREFIX):] for label in labels]


def rounded(value):
  """A score or a time to 4 decimals for printing (the summary is computed before rounding)."""
  return round(float(value), 4) if isinstance(value, (float, np.floating)) else value


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task", choices=sorted(TASKS), required=True)
  parser.add_argument("--data", required=True, help="the folder holding the task's files")
  parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one training run each")
  parser.add_argument("--repeats", type=int, default=1, help="training runs per seed (repeatability)")
  parser.add_argument("--threads", type=int, default=2)
  arguments = parser.parse_args()
  task = TASKS[arguments.task]
  seeds = [int(seed) for seed in arguments.seeds.split(",")]
  version = importlib.metadata.version("fasttext")

  splits = {split: read_split(os.path.join(arguments.data, name), task) for split, name in task["files"].items()}
  train_labels = set(splits["train"][1])
  if train_labels != {"0", POSITIVE_LABEL}:
    raise SystemExit(f"{arguments.task}: expected the training labels 0 and 1, found {sorted(train_labels)}")

  runs = []
  with tempfile.TemporaryDirectory(prefix="official_fasttext_") as folder:
    train_path = os.path.join(folder, "train.txt")
    with open(train_path, "w", encoding="utf-8") as file:
      for text, label in zip(*splits["train"]):
        file.write(f"{LABEL_PREFIX}{label} {text}\n")
    for seed in seeds:
      for repeat in range(arguments.repeats):
        start = time.perf_counter()
        model = fasttext.train_supervised(input=train_path, thread=arguments.threads, seed=seed, verbose=0)
        train_seconds = time.perf_counter() - start
        run = dict(task=arguments.task, fasttext=version, seed=seed, repeat=repeat, threads=arguments.threads,
                   train_seconds=train_seconds, train_sentences=len(splits["train"][0]),
                   vocabulary=len(model.words))
        for split, (texts, labels) in splits.items():
          if split == "train":
            continue
          predicted = predict(model, texts)
          split_scores = scores(labels, predicted)
          run[f"{split}_accuracy"] = split_scores["accuracy"]
          run[f"{split}_mcc"] = split_scores["mcc"]
          if split == "dev":
            run["dev_predictions_sha256"] = hashlib.sha256(" ".join(predicted).encode()).hexdigest()[:12]
        print(json.dumps({key: rounded(value) for key, value in run.items()}), flush=True)
        runs.append(run)

  metrics = [key for key in runs[0] if key.endswith(("_accuracy", "_mcc")) or key == "train_seconds"]
  summary = dict(task=arguments.task, fasttext=version, threads=arguments.threads, runs=len(runs),
                 distinct_dev_predictions=len({run["dev_predictions_sha256"] for run in runs}))
  for key in metrics:
    values = np.array([run[key] for run in runs])
    # The sample standard deviation (ddof=1): the spread a new run would show; 0 for one run.
    summary[key] = dict(mean=rounded(values.mean()), sd=rounded(values.std(ddof=1) if len(values) > 1 else 0.0))
  print(json.dumps(dict(summary=summary)), flush=True)


if __name__ == "__main__":
  main()
