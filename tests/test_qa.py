"""Extractive QA (task.name="squad") through the one loop: windows, training, EM/F1, predictions."""

import copy
import json

import numpy as np
import pytest

from jaxlm.training import evaluate, experiments, loop, predict
from jaxlm.data import qa_windows, text_files
from task_fixtures import (SQUAD_ARTICLES, assert_one_device_step_matches_four, finetune_config, squad_document,
                           write_squad)

ARG = "task=xquad_ru,body=transformer"


@pytest.fixture(scope="module")
def qa_folder(tmp_path_factory):
  return write_squad(str(tmp_path_factory.mktemp("squad")))


def _task(folder, **overrides):
  return experiments.build_experiment(finetune_config(ARG, folder, **overrides)).task


def test_configs_build():
  from configs import finetune
  for variant in ("task=xquad_ru", "task=xquad_en_to_ru", "task=xquad_ru,body=fasttext,smoke"):
    config = finetune.get_config(variant)
    assert config.task.name == "squad" and config.is_locked
  assert finetune.get_config("task=xquad_en_to_ru").task.eval_file == "xquad.ru.json"


def test_splits_are_whole_articles_and_windows_cover_long_contexts(qa_folder):
  task = _task(qa_folder)
  assert [question.id for question in task.questions["train"]] == ["q0", "q1", "q2", "q3"]
  assert [question.id for question in task.questions["valid"]] == ["q4", "q5"]
  for split in task.splits:
    for question in task.questions[split]:
      windows = task.windows[split][question.id]
      context_tokens = len(task._spans(question.context))
      covered = set(np.concatenate([window.context_index[window.context_index >= 0] for window in windows]))
      assert covered == set(range(context_tokens))  # every context token is in some window
      text, start = question.answers[0]
      holding = [window for window in windows if window.start_position != qa_windows.NULL_POSITION]
      assert holding, question.id  # stride 4 leaves room for these short answers
      for window in holding:  # the targets map back to the answer's characters
        assert window.context[window.char_start[window.start_position]:
                              window.char_end[window.end_position]] == text
  assert len(task.windows["valid"]["q4"]) > 3  # the long dev paragraph needs several windows
  assert len(task.windows["train"]["q3"]) > 1
  # Every window of the split once, in order; padding rows have weight 0 and no real position.
  batches = list(task.eval_batches("valid", batch_size=4))
  weights = np.concatenate([batch["weights"] for batch in batches])
  assert weights.sum() == task.num_examples("valid") and len(weights) % 4 == 0
  indices = np.concatenate([batch["example_index"] for batch in batches])
  assert list(indices[weights > 0]) == list(range(task.num_examples("valid")))
  assert not np.concatenate([batch["mask"] for batch in batches])[weights == 0].any()
  # Training rows are windows, each once per epoch.
  rows = np.concatenate([task.train_batch(step, seed=0, batch_size=4)["example_index"] for step in range(10)])
  epoch = task.num_examples("train")
  assert sorted(rows[:epoch]) == list(range(epoch))


def test_eval_file_gives_zero_shot_splits(qa_folder, tmp_path):
  folder = write_squad(str(tmp_path), copy.deepcopy(squad_document()))  # the "source language" file
  document = squad_document()
  for article in document["data"]:
    for qa in article["paragraphs"][0]["qas"]:
      qa["id"] = "ru-" + qa["id"]
      qa["question"] += " Кошка?"  # a target-language word no training text holds
  write_squad(folder, document, name="target.json")
  task = _task(folder, **{"task.eval_file": "target.json"})
  assert task.splits == ("train", "valid", "valid_source")
  assert [question.id for question in task.questions["valid"]] == ["ru-q4", "ru-q5"]
  assert [question.id for question in task.questions["valid_source"]] == ["q4", "q5"]
  assert len(task.questions["train"]) == 4
  # The bag input (from scratch) gives the target file's words rows of their own, read from its
  # text (no label), so a zero-shot run feeds them, not <unk>; training never sees those rows.
  word_id = task.tokenizer.index["кошка"]
  assert (task.arrays["valid"]["inputs"] == word_id).any()
  assert not (task.arrays["train"]["inputs"] == word_id).any()


def test_test_files_are_whole_splits_scored_and_never_trained_on(tmp_path):
  folder = write_squad(str(tmp_path / "squad"))
  document = squad_document()
  for article in document["data"]:
    for qa in article["paragraphs"][0]["qas"]:
      qa["id"] = "official-" + qa["id"]
  write_squad(str(tmp_path / "squad"), document, name="official_dev.json")
  write_squad(str(tmp_path / "translated"), squad_document(SQUAD_ARTICLES[:2]), name="translated.json")
  task = _task(folder, **{"task.test_files": {"test": "official_dev.json",
                                              "translated": "../translated/translated.json"}})
  assert task.splits == ("train", "valid", "test", "translated")
  assert [question.id for question in task.questions["test"]] == [f"official-q{index}" for index in range(6)]
  assert [question.id for question in task.questions["translated"]] == ["q0", "q1", "q2"]
  assert task.labelled["test"] and task.num_examples("test") >= 6
  assert task.paths["translated"].endswith("translated.json")
  # An empty name leaves the split out; a name taken by another split, or a missing file, is refused.
  assert _task(folder, **{"task.test_files": {"test": ""}}).splits == ("train", "valid")
  with pytest.raises(ValueError, match=r"task.test_files.valid: 'valid' is already a split"):
    _task(folder, **{"task.test_files": {"valid": "official_dev.json"}})
  with pytest.raises(text_files.DataError, match=r"missing.json.*task.test_files.test"):
    _task(folder, **{"task.test_files": {"test": "missing.json"}})


def test_bad_inputs_are_clear_errors(qa_folder, tmp_path):
  document = squad_document()
  document["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 3
  write_squad(str(tmp_path / "mismatch"), document)
  with pytest.raises(text_files.DataError, match="question id 'q2'"):
    _task(str(tmp_path / "mismatch"))
  task = _task(str(tmp_path / "mismatch"), **{"task.skip_mismatched": True})
  assert task.skipped_mismatched == 1
  assert [question.id for question in task.questions["train"]] == ["q0", "q1", "q3"]

  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "qa.ru.json").write_text('{"rows": [1, 2]}', encoding="utf-8")
  with pytest.raises(text_files.DataError, match="not in the SQuAD format"):
    _task(str(tmp_path / "other"))
  (tmp_path / "other" / "qa.ru.json").write_text("id,sentence\n0,Кот\n", encoding="utf-8")
  with pytest.raises(text_files.DataError, match="is not JSON"):
    _task(str(tmp_path / "other"))

  document = squad_document()
  del document["data"][2]["paragraphs"][0]["context"]
  write_squad(str(tmp_path / "missing"), document)
  with pytest.raises(text_files.DataError, match="no 'context' field"):
    _task(str(tmp_path / "missing"))
  with pytest.raises(text_files.DataError, match="not found"):
    _task(qa_folder, **{"task.file": "absent.json"})

  with pytest.raises(ValueError, match="keep their character spans"):
    _task(qa_folder, **{"task.tokenizer": "whitespace"})


def _sgd_config(folder):
  config = finetune_config(ARG, folder, **{"model.transformer.dropout": 0.0, "task.head_dropout": 0.0})
  config.optim.name, config.optim.lr, config.optim.warmup_steps = "sgd", 0.5, 0
  config.optim.embedding_updates, config.model.embedding_lr_multiplier = "dense", 1.0  # lazy updates are AdamW's
  return config


def test_four_devices_give_the_same_span_step_as_one(qa_folder):
  assert_one_device_step_matches_four(_sgd_config(qa_folder))


def test_overfits_four_questions_and_predicts_every_id(qa_folder, tmp_path):
  config = finetune_config(ARG, qa_folder, **{
      "train.steps": 150, "train.eval_every": 150, "train.log_every": 50, "optim.lr": 3e-3,
      "optim.warmup_steps": 10, "optim.weight_decay": 0.0, "model.transformer.dropout": 0.0,
      "task.head_dropout": 0.0})
  workdir = str(tmp_path / "run")
  summary = loop.train_and_evaluate(config, workdir, progress=False)
  assert np.isfinite(summary["loss"]) and summary["windows"] > 0
  predict.predict_workdir(workdir, str(tmp_path / "train.json"), split="train")
  (scores,) = evaluate.evaluate_workdir(workdir, splits=("train",))
  assert scores["questions"] == 4
  assert scores["exact_match"] == 100.0 and scores["f1"] == 100.0, json.load(open(tmp_path / "train.json"))
  answers = json.load(open(tmp_path / "train.json", encoding="utf-8"))
  gold = {question_id: answer for _, questions in SQUAD_ARTICLES for question_id, _, answer in questions}
  assert answers == {question_id: gold[question_id] for question_id in ("q0", "q1", "q2", "q3")}
  # Dev: every question is counted and predicted, answered or not.
  (valid,) = evaluate.evaluate_workdir(workdir, best=True, splits=("valid",))
  assert valid["questions"] == 2 and 0.0 <= valid["f1"] <= 100.0
  assert summary["f1"] == valid["f1"]  # the training run's last validation scored EM/F1 too
  output = tmp_path / "valid.json"
  result = predict.predict_workdir(workdir, str(output), split="valid", best=True, batch_size=3)
  assert set(json.load(open(output, encoding="utf-8"))) == {"q4", "q5"} and result["examples"] == 2
  # Any SQuAD file predicts, answers or not: every question id of the file.
  document = squad_document()
  document["data"][0]["paragraphs"][0]["qas"][0]["answers"] = []
  write_squad(str(tmp_path / "input"), document, name="input.json")
  predict.predict_workdir(workdir, str(output), input_path=str(tmp_path / "input" / "input.json"), overwrite=True)
  assert sorted(json.load(open(output, encoding="utf-8"))) == [f"q{index}" for index in range(6)]


# Answers in Cyrillic with a stress mark, Latin with diacritics, and an emoji (which the
# pieces hold as 4 byte-fallback pieces): each must come back exactly from piece offsets.
# dev_fraction 0.5: article 1 is dev, so its text was never seen by SentencePiece training.
ROUND_TRIP_ARTICLES = [
    ("Москва́ — столи́ца России. Naïve café owners sell crème brûlée in Zürich, где живёт 🙂 кот.",
     [("r0", "Что есть столи́ца?", "Москва́"), ("r1", "What do they sell?", "crème brûlée"),
      ("r2", "Кто живёт?", "🙂 кот"), ("r3", "Where?", "Zürich")]),
    ("Ёжик в тумане искал лошадку; Ångström measured señor Dvořák's 🎻 in Łódź.",
     [("r4", "Кто искал?", "Ёжик"), ("r5", "Whose violin?", "Dvořák's 🎻"), ("r6", "Where?", "Łódź")]),
]


def _bpe_config(folder, **overrides):
  return finetune_config(ARG + ",input=bpe", folder, **{"task.dev_fraction": 0.5, **overrides})


def test_bpe_pieces_give_answers_back_by_character_offsets(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXLM_CACHE", str(tmp_path / "cache"))
  folder = write_squad(str(tmp_path / "qa"), squad_document(ROUND_TRIP_ARTICLES))
  task = experiments.build_experiment(_bpe_config(folder, **{"task.max_length": 40, "task.stride": 8})).task
  assert task.words[:3] == ["<unk>", "<s>", "</s>"] and task.sentencepiece_model
  for split in ("train", "valid"):
    logits = np.zeros((task.num_examples(split), 2, task.length), np.float32)
    row = 0
    for question in task.questions[split]:
      text, _ = question.answers[0]
      windows = task.windows[split][question.id]
      holding = [window for window in windows if window.start_position != qa_windows.NULL_POSITION]
      assert holding, question.id
      for window in windows:
        if window.start_position != qa_windows.NULL_POSITION:
          assert question.context[window.char_start[window.start_position]:
                                  window.char_end[window.end_position]] == text
          logits[row, 0, window.start_position] = logits[row, 1, window.end_position] = 10.0
        row += 1
    # Post-processing turns those positions back into the exact answer strings.
    assert task.answers(split, logits) == {question.id: question.answers[0][0] for question in task.questions[split]}
  assert any(token.startswith("<0x") for token in (task.words[i] for i in task.arrays["valid"]["inputs"].ravel()))


def test_bpe_fine_tunes_and_scores(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXLM_CACHE", str(tmp_path / "cache"))
  folder = write_squad(str(tmp_path / "qa"), squad_document(ROUND_TRIP_ARTICLES))
  config = _bpe_config(folder, **{"train.steps": 3, "train.eval_every": 3, "task.max_length": 40, "task.stride": 8,
                                 "model.transformer.max_length": 40})
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  (valid,) = evaluate.evaluate_workdir(str(tmp_path / "run"), splits=("valid",))
  assert valid["questions"] == 3 and valid["f1"] == summary["f1"] and 0.0 <= valid["f1"] <= 100.0


# The concatenation span head's first losses, recorded before the question-aware reader changed
# the model contract (a batch's per-token features reach the model): any change to the windows,
# the model call or the span loss moves them.
PINNED_CONCATENATION_LOSSES = {
    "body=transformer": [("train", 2, 2.779238224029541), ("valid", 3, 2.7521868105287903),
                         ("train", 4, 2.7409257888793945), ("train", 6, 2.5763509273529053),
                         ("valid", 6, 2.5977051346390336)],
    "body=lstm": [("train", 2, 2.7479262351989746), ("valid", 3, 2.7668386388708046),
                  ("train", 4, 2.7553625106811523), ("train", 6, 2.7495079040527344),
                  ("valid", 6, 2.7639473809136286)],
}


@pytest.mark.parametrize("body", sorted(PINNED_CONCATENATION_LOSSES))
def test_concatenation_head_losses_are_pinned(qa_folder, tmp_path, body):
  # The head's numerics are pinned: dense updates, as when the losses were recorded.
  config = finetune_config(f"task=xquad_ru,{body}", qa_folder,
                           **{"train.steps": 6, "train.log_every": 2, "train.eval_every": 3,
                              "optim.embedding_updates": "dense", "model.embedding_lr_multiplier": 1.0})
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  logged = [(record["kind"], record["step"], record["loss"]) for record in map(json.loads, open(tmp_path / "metrics.jsonl"))]
  assert [entry[:2] for entry in logged] == [entry[:2] for entry in PINNED_CONCATENATION_LOSSES[body]]
  np.testing.assert_allclose([entry[2] for entry in logged],
                             [entry[2] for entry in PINNED_CONCATENATION_LOSSES[body]], rtol=2e-6)
