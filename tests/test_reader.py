"""The question-aware QA reader (task.span_head="reader"): its features, its masking, and that
every body family learns with it."""

import collections
import json
import re
import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.data import match_features, qa_windows, spans
from jaxlm.training import evaluate, experiments, loop, predict
from task_fixtures import SQUAD_ARTICLES, assert_one_device_step_matches_four, finetune_config, write_squad

# SQUAD_ARTICLES' 4 training questions, its dev article (index 3 of 5 with dev_fraction 0.25),
# and 4 more training questions in Latin with diacritics: 8 training questions in all.
READER_ARTICLES = SQUAD_ARTICLES + [
    ("Ångström and señor Dvořák met in Zürich in 1902. The café near the lake sold crème brûlée.",
     [("q6", "Where did Dvořák meet Ångström?", "Zürich"), ("q7", "When did they meet?", "1902"),
      ("q8", "What did the café sell?", "crème brûlée"), ("q9", "Who met Ångström?", "señor Dvořák")]),
]
READER = {"task.span_head": "reader", "task.max_length": 24, "task.question_length": 8, "task.stride": 8}


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory):
  from task_fixtures import squad_document
  return write_squad(str(tmp_path_factory.mktemp("squad")), squad_document(READER_ARTICLES))


def _features(question, context):
  tokens = spans.word_spans(context)
  return {context[token.start:token.end]: tuple(row) for token, row in
          zip(tokens, match_features.context_features(question, context, tokens).astype(int))}


def test_exact_match_features_for_cyrillic_diacritics_and_punctuation():
  features = _features("Где жил Пушкин? Кто такой Dvořák, и что такое «Ёж»?",
                       "Пушкин, пушкин, ПУШКИНА жил; dvorak Dvořák еж, Ёж! ? «")
  assert features["Пушкин"] == (1, 1, 1)  # "Пушкин," in the context, "Пушкин?" in the question
  assert features["пушкин"] == (0, 1, 1)  # lower-cased only
  assert features["ПУШКИНА"] == (0, 0, 0)  # another word form: no lemma here
  assert features["жил"] == (1, 1, 1)
  assert features["Dvořák"] == (1, 1, 1) and features["dvorak"] == (0, 0, 1)  # without its diacritics
  assert features["еж"] == (0, 0, 1) and features["Ёж"] == (1, 1, 1)  # ё -> е only in the loosest
  for punctuation in (",", ";", "!", "?", "«"):  # in the question too, yet never a match
    assert features[punctuation] == (0, 0, 0)
  # Stress marks are not part of the written form: "Москва́" matches "Москва" exactly.
  assert _features("Москва?", "Москва́ стоит")["Москва́"] == (1, 1, 1)


def test_pieces_carry_their_words_features():
  context = "Dvořák's café"
  pieces = [spans.Span("▁dvo", 0, 3), spans.Span("řák's", 3, 8), spans.Span("▁café", 9, 13)]
  features = match_features.context_features("Who is Dvořák's friend?", context, pieces)
  np.testing.assert_array_equal(features, [[1, 1, 1], [1, 1, 1], [0, 0, 0]])


def test_two_segment_windows():
  context_spans = [(10 + index, 2 * index, 2 * index + 1) for index in range(9)]
  windows = qa_windows.make_windows([5, 6, 7, 8, 9], context_spans, max_length=12, stride=3, separator_id=1,
                                    context="a b c d e f g h i", answer=(14, 17), question_positions=4)
  first = windows[0]
  np.testing.assert_array_equal(first.token_ids, [5, 6, 7, 8, 1, 10, 11, 12, 13, 14, 15, 16])
  assert first.question_tokens_dropped == 1 and first.null_position == 4
  assert (first.start_position, first.end_position) == (4, 4)  # context tokens 7 and 8: not in window 0
  short = qa_windows.make_windows([5], context_spans[:2], max_length=12, stride=3, separator_id=1,
                                  context="a b", question_positions=4)[0]
  np.testing.assert_array_equal(short.mask, [1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])  # two right-padded segments
  assert [(window.start_position, window.end_position) for window in windows] == [(4, 4), (9, 10)]
  with pytest.raises(Exception, match="question_positions=7"):
    qa_windows.make_windows([5], context_spans, max_length=12, stride=3, separator_id=1, context="",
                            question_positions=7)


def test_question_attention_ignores_padding(reader_folder):
  """Changing the ids and features at padded positions (question and context) changes no real logit."""
  config = finetune_config("task=xquad_ru,body=transformer", reader_folder, **READER)
  experiment = experiments.build_experiment(config)
  task, model = experiment.task, experiment.model
  batch = task._batch("train", np.arange(4))
  assert not batch["mask"][:, :8].all() and not batch["mask"][:, 8:].all()  # some padding in both segments
  variables = model.init({"params": jax.random.key(0)}, jnp.asarray(batch["inputs"]), train=False)
  def logits(inputs, features):
    return np.asarray(model.apply(variables, jnp.asarray(inputs), train=False, mask=jnp.asarray(batch["mask"]),
                                  features=jnp.asarray(features))[0])
  padding = ~batch["mask"]
  noise = np.random.default_rng(0)
  changed_inputs = np.where(padding, noise.integers(1, len(task.words), batch["inputs"].shape), batch["inputs"])
  changed_features = np.where(padding[..., None], 1.0, batch["features"])
  before, after = logits(batch["inputs"], batch["features"]), logits(changed_inputs, changed_features)
  real = np.broadcast_to(batch["mask"][:, None, :], before.shape)
  np.testing.assert_allclose(after[real], before[real], rtol=1e-5, atol=1e-5)
  assert np.all(before[:, :, :8] < -1e8)  # question positions are never a start or an end
  assert batch["features"][:, 8:].any()  # the fixture's questions share words with their contexts


def test_four_devices_give_the_same_reader_step_as_one(reader_folder):
  """The features travel with their rows, and a lazy embedding view works through the reader."""
  config = finetune_config("task=xquad_ru,body=lstm", reader_folder, **READER, **{
      "model.lstm.dropout_input": 0.0, "model.lstm.dropout_output": 0.0, "task.head_dropout": 0.0,
      "optim.embedding_updates": "lazy"})
  assert_one_device_step_matches_four(config)


def _official_scores(questions, predictions):
  """SQuAD v1.1's evaluate script's rules, written out again: EM and F1 (%) over every question."""
  def normalise(text):
    text = "".join(character for character in text.lower() if character not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())
  def f1(prediction, gold):
    prediction, gold = normalise(prediction).split(), normalise(gold).split()
    same = sum((collections.Counter(prediction) & collections.Counter(gold)).values())
    return 0.0 if same == 0 else 2 * same / (len(prediction) + len(gold))
  exact = [max(float(normalise(predictions.get(question_id, "")) == normalise(answer)) for answer in answers)
           for question_id, answers in questions.items()]
  overlap = [max(f1(predictions.get(question_id, ""), answer) for answer in answers)
             for question_id, answers in questions.items()]
  return 100 * np.mean(exact), 100 * np.mean(overlap)


# body -> learning rate: the FastText baseline (no body) is a linear model over its vectors and runs hotter.
BODIES = {"fasttext": 1e-2, "lstm": 1e-2, "tcn": 1e-2, "transformer": 3e-3}


@pytest.mark.parametrize("body", sorted(BODIES))
def test_every_body_overfits_eight_questions_with_the_reader(reader_folder, tmp_path, body):
  dropouts = {"fasttext": {}, "lstm": {"model.lstm.dropout_input": 0.0, "model.lstm.dropout_output": 0.0}
              }.get(body, {f"model.{body}.dropout": 0.0})
  config = finetune_config(f"task=xquad_ru,body={body}", reader_folder, **READER, **dropouts, **{
      "train.steps": 150, "train.eval_every": 150, "train.log_every": 150, "optim.lr": BODIES[body],
      "optim.warmup_steps": 10, "optim.weight_decay": 0.0, "task.head_dropout": 0.0})
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir, progress=False)
  (scores,) = evaluate.evaluate_workdir(workdir, splits=("train",))
  assert scores["questions"] == 8 and scores["exact_match"] == 100.0, scores
  # The predictions file, scored again by the official rules written out here, gives evaluate.py's scores.
  (valid,) = evaluate.evaluate_workdir(workdir, splits=("valid",))
  output = tmp_path / "valid.json"
  predict.predict_workdir(workdir, str(output), split="valid")
  answers = json.load(open(output, encoding="utf-8"))
  gold = {question_id: [answer] for question_id, _, answer in READER_ARTICLES[3][1]}
  assert set(answers) == set(gold)
  exact_match, f1 = _official_scores(gold, answers)
  assert valid["exact_match"] == pytest.approx(exact_match) and valid["f1"] == pytest.approx(f1)


def test_fasttext_corpus_of_a_task_holds_only_its_training_texts(reader_folder, tmp_path):
  from jaxlm.data import fasttext_vectors
  task = experiments.build_experiment(finetune_config("task=xquad_ru,body=lstm", reader_folder, **READER)).task
  written = fasttext_vectors.write_corpus(str(tmp_path / "corpus.txt"), task.training_texts() + ["", "Naïve, Café!"])
  lines = open(tmp_path / "corpus.txt", encoding="utf-8").read().splitlines()
  assert written == len(lines) == 8 + 4 + 1  # 8 training questions, 4 training contexts, the extra text
  assert "где родился пушкин ?" in lines and lines[-1] == "naïve , café !"  # jaxlm's word tokens
  assert not any("эрмитаж" in line for line in lines)  # no word of the dev article or its questions
