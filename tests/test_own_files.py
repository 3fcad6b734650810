"""A user's own labelled files fine-tune from the command line alone: configs/finetune.py's
task=csv, task=conllu and task=squad_json, built as launch/train.py builds them (the config
file and its variants, then --config.* overrides), trained for the smoke steps and evaluated."""

import csv
import os

import numpy as np
import pytest

from conftest import REPO_ROOT
from jaxlm import config_files, errors, tasks
from jaxlm.training import evaluate, loop
from task_fixtures import SQUAD_FILE, WORDS, write_squad, write_treebank

FINETUNE = os.path.join(REPO_ROOT, "configs", "finetune.py")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXLM_CACHE", str(tmp_path / "cache"))


def train_and_evaluate(variants: str, overrides: list[str], workdir: str):
  """launch/train.py --config=configs/finetune.py:<variants>,smoke --config.<override>..., then
  launch/evaluate.py --split=valid: (the run's summary, the evaluation's valid scores)."""
  config = config_files.load_with_overrides(f"{FINETUNE}:{variants},smoke", overrides)
  summary = loop.train_and_evaluate(config, workdir, progress=False)
  (valid,) = evaluate.evaluate_workdir(workdir, splits=("valid",))
  return summary, valid


def write_reviews(folder: str, sizes=(40, 12, 5)) -> str:
  """train.tsv / dev.tsv (columns stars, review; no id) and an unlabelled test.tsv (review):
  3 stars when a review holds "да", 1 when it holds "нет", else 2."""
  rng = np.random.default_rng(0)
  os.makedirs(folder, exist_ok=True)
  for name, size in zip(("train", "dev", "test"), sizes):
    with open(os.path.join(folder, f"{name}.tsv"), "w", encoding="utf-8", newline="") as handle:
      writer = csv.writer(handle, delimiter="\t")
      writer.writerow(["review"] if name == "test" else ["stars", "review"])
      for _ in range(size):
        words = [WORDS[index] for index in rng.integers(0, len(WORDS), size=int(rng.integers(2, 7)))]
        stars = "3" if "да" in words else "1" if "нет" in words else "2"
        writer.writerow([" ".join(words)] if name == "test" else [stars, " ".join(words)])
  return folder


def test_a_tsv_with_its_own_columns(tmp_path):
  folder = write_reviews(str(tmp_path / "reviews"))
  summary, valid = train_and_evaluate("task=csv,body=fasttext", [
      f"task.path={folder}", "task.files.train=train.tsv", "task.files.valid=dev.tsv",
      "task.files.test=test.tsv", "task.text_column=review", "task.label_column=stars"], str(tmp_path / "run"))
  assert 0.0 <= summary["accuracy"] <= 1.0 and valid["examples"] == 12
  assert valid["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-6)


def test_a_missing_test_file_is_named_and_can_be_left_out(tmp_path):
  folder = write_reviews(str(tmp_path / "reviews"))
  columns = ["task.text_column=review", "task.label_column=stars"]
  with pytest.raises(errors.DataError, match=r"test.csv \(or .xz/.gz\) not found.*task.files.test=''"):
    train_and_evaluate("task=csv,body=fasttext", [f"task.path={folder}", "task.files.train=train.tsv",
                                                  "task.files.valid=dev.tsv"] + columns, str(tmp_path / "run"))
  os.remove(os.path.join(folder, "test.tsv"))
  config = config_files.load_with_overrides(f"{FINETUNE}:task=csv,body=fasttext,smoke", [
      f"task.path={folder}", "task.files.train=train.tsv", "task.files.valid=dev.tsv", "task.files.test="] + columns)
  assert sorted(tasks.build_task(config).splits) == ["train", "valid"]


def test_a_conllu_treebank_with_the_default_file_names(tmp_path):
  folder = write_treebank(str(tmp_path / "treebank"))  # train.conllu, dev.conllu, test.conllu
  summary, valid = train_and_evaluate("task=conllu,body=fasttext", [f"task.path={folder}"], str(tmp_path / "run"))
  assert 0.0 <= summary["accuracy"] <= 1.0
  assert valid["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-6)


def test_a_squad_json_file_with_a_held_out_dev_fraction(tmp_path):
  folder = write_squad(str(tmp_path / "qa"))  # 4 articles: a quarter of them is the dev split
  summary, valid = train_and_evaluate("task=squad_json,body=fasttext", [
      f"task.path={folder}", f"task.file={SQUAD_FILE}", "task.dev_fraction=0.25"], str(tmp_path / "run"))
  assert valid["questions"] == 2 and 0.0 <= valid["f1"] <= 100.0
  assert valid["f1"] == pytest.approx(summary["f1"])
