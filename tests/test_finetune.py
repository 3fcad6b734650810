"""Fine-tuning tasks through the one loop: classification and tagging, every body, every start."""

import csv
import json
import os

import jax
import numpy as np
import pytest

from conftest import smoke_config, write_tiny_corpus
from jaxlm import checkpoint, errors
from jaxlm.starts import pretrained_checkpoint
from jaxlm.training import evaluate, experiments, loop, optim, predict, steps
from jaxlm.data import example_batches, text_files
from task_fixtures import assert_one_device_step_matches_four, finetune_config, write_classification, write_treebank


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
  return write_classification(str(tmp_path_factory.mktemp("sentences")))


@pytest.fixture(scope="module")
def treebank(tmp_path_factory):
  return write_treebank(str(tmp_path_factory.mktemp("treebank")))


def test_training_order_visits_every_example_once_per_epoch():
  seen = np.concatenate([example_batches.train_indices(step, seed=3, batch_size=8, num_examples=20)
                         for step in range(5)])  # 40 positions = 2 epochs
  assert sorted(seen[:20]) == list(range(20)) and sorted(seen[20:]) == list(range(20))
  # Each host's rows are its slice of the same global batch.
  halves = [example_batches.train_indices(2, seed=3, batch_size=8, num_examples=20, process_index=index,
                                          process_count=2) for index in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), example_batches.train_indices(
      2, seed=3, batch_size=8, num_examples=20))


@pytest.mark.parametrize("arg,metric", [("task=rucola,body=transformer", "mcc"),
                                        ("task=rucola,body=lstm", "mcc"),
                                        ("task=upos,body=tcn", "accuracy"),
                                        ("task=upos,body=fasttext", "accuracy")])
def test_each_body_fine_tunes_and_evaluates(arg, metric, sentences, treebank, tmp_path):
  folder = sentences if "rucola" in arg else treebank
  config = finetune_config(arg, folder, **{"train.steps": 40, "train.eval_every": 20, "optim.lr": 3e-3,
                                           "optim.warmup_steps": 5, "train.patience": 0})
  summary = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  losses = [record["loss"] for record in records if record["kind"] == "train"]
  assert losses[-1] < losses[0]
  assert metric in summary and np.isfinite(summary[metric])
  results = evaluate.evaluate_workdir(str(tmp_path), best=True, splits=("valid",))
  assert results[0][metric] == pytest.approx(max(record[metric] for record in records
                                                 if record["kind"] == "valid"), abs=1e-6)


def test_a_dev_set_of_any_size_counts_every_example_once(sentences, tmp_path):
  # 30 dev sentences in batches of 8 rows on 4 devices: the last batch is 6 real rows + 2 padding.
  config = finetune_config("task=rucola,body=transformer", sentences, **{"train.steps": 2,
                                                                         "train.eval_batch_size": 8})
  summary = loop.train_and_evaluate(config, str(tmp_path), progress=False)
  assert summary["examples"] == 30


def test_four_devices_give_the_same_classification_step_as_one(sentences):
  config = finetune_config("task=rucola,body=transformer", sentences, **{"model.transformer.dropout": 0.0,
                                                                         "task.head_dropout": 0.0})
  config.optim.name, config.optim.lr, config.optim.warmup_steps = "sgd", 0.5, 0
  config.optim.embedding_updates = "dense"  # lazy updates are lazy AdamW
  assert_one_device_step_matches_four(config)


def test_a_restored_encoder_equals_the_pre_trained_one(cache_dir, sentences, tmp_path):
  corpus = write_tiny_corpus(str(tmp_path / "corpus"))
  with open(os.path.join(corpus, "train.txt"), "a", encoding="utf-8") as handle:
    handle.write(" w1 <unk> w2 \n")  # task words the corpus lacks need an <unk> row
  pre_trained = smoke_config(corpus, cache_dir, **{"train.steps": 3, "model.transformer.max_length": 16})
  pre_trained.model.width = 128  # configs/finetune.py's width
  pre_trained.model.input = "bag"
  pre_trained.model.bucket, pre_trained.model.min_n, pre_trained.model.max_n = 2000, 3, 5
  loop.train_and_evaluate(pre_trained, str(tmp_path / "lm"), progress=False)
  config = finetune_config("task=rucola,body=transformer,start=checkpoint", sentences,
                           **{"init.checkpoint": str(tmp_path / "lm"), "model.width": 128,
                              "model.transformer.causal": True, "model.transformer.positions": "learned"})
  experiment = experiments.build_experiment(config)
  saved_words = checkpoint.load_words(str(tmp_path / "lm"))
  words = experiment.task.words
  # The bag keeps the pre-trained words and appends the task's own (Russian) words after them.
  assert words[:len(saved_words)] == saved_words and "кот" in words[len(saved_words):]
  state = experiments.init_experiment_state(experiment)
  saved = pretrained_checkpoint.restore_encoder(str(tmp_path / "lm"))
  for restored, original in zip(jax.tree.leaves(state.params["body"]), jax.tree.leaves(saved["body"])):
    np.testing.assert_array_equal(np.asarray(restored), original)
  table, saved_table = np.asarray(state.params["input_layer"]["table"]), saved["input_layer"]["table"]
  new_words = len(words) - len(saved_words)
  assert table.shape[0] == saved_table.shape[0] + new_words
  np.testing.assert_array_equal(table[:len(saved_words)], saved_table[:len(saved_words)])  # word rows
  np.testing.assert_array_equal(table[len(words):], saved_table[len(saved_words):])  # n-gram buckets
  # A body that does not match is an error naming what differs.
  config.unlock()
  config.model.transformer.num_layers = 2
  with pytest.raises(ValueError, match="body/block_1"):
    experiments.init_experiment_state(experiments.build_experiment(config))


def test_init_checkpoint_that_is_not_a_workdir_is_refused(sentences, tmp_path):
  config = finetune_config("task=rucola,body=transformer,start=checkpoint", sentences,
                           **{"init.checkpoint": str(tmp_path / "nothing")})
  with pytest.raises(FileNotFoundError, match="not a jaxlm workdir"):
    experiments.build_experiment(config)


def test_bad_classification_inputs_are_clear_errors(sentences, tmp_path):
  with pytest.raises(text_files.DataError, match="no text column 'text'"):
    experiments.build_experiment(finetune_config("task=rucola", sentences, **{"task.text_column": "text"}))
  broken = tmp_path / "broken"
  write_classification(str(broken))
  with open(broken / "dev.csv", "a", encoding="utf-8") as handle:
    handle.write("99,Кот спит.,7\n")
  with pytest.raises(text_files.DataError, match="'7'"):
    experiments.build_experiment(finetune_config("task=rucola", str(broken)))
  with open(broken / "dev.csv", "w", encoding="utf-8") as handle:
    handle.write('id,sentence,acceptable\n0," ",1\n')
  with pytest.raises(text_files.DataError, match="dev.csv line 2"):
    experiments.build_experiment(finetune_config("task=rucola", str(broken)))


def test_a_malformed_conllu_line_names_file_and_line(treebank, tmp_path):
  broken = tmp_path / "broken"
  write_treebank(str(broken))
  with open(broken / "dev.conllu", "a", encoding="utf-8") as handle:
    handle.write("1\tкот\tкот\n")
  with pytest.raises(text_files.DataError, match=r"dev.conllu.*line \d+"):
    experiments.build_experiment(finetune_config("task=upos", str(broken)))


def test_truncated_words_count_as_wrong(treebank):
  config = finetune_config("task=upos,body=transformer", treebank, **{"task.max_length": 4})
  task = experiments.build_experiment(config).task
  batch = next(task.eval_batches("valid", batch_size=64))
  assert batch["weights"].sum() < batch["gold_words"].sum()  # some words are cut off
  sums = {"loss_sum": 0.0, "count": float(batch["weights"].sum()), "correct": float(batch["weights"].sum()),
          "gold_words": float(batch["gold_words"].sum())}
  assert task.summarise(sums)["accuracy"] < 1.0  # even a perfect tagger of what it saw


def test_frozen_encoder_steps_then_training(sentences):
  config = finetune_config("task=rucola,body=transformer", sentences, **{"optim.freeze_encoder_steps": 2,
                                                                         "optim.warmup_steps": 0})
  experiment = experiments.build_experiment(config)
  state = experiments.init_experiment_state(experiment)
  step = steps.make_train_step(experiment.model, experiment.task.loss, experiment.optimizer, experiment.mesh,
                               state, config.seed, sparse_embeddings=optim.lazy_embeddings(config.optim))
  before = jax.device_get(state.params)
  snapshots = []
  for index in range(3):
    batch = experiment.task.train_batch(index, seed=0, batch_size=config.train.batch_size)
    state, _ = step(state, experiments.global_batch(experiment.mesh, batch))
    snapshots.append(jax.device_get(state.params))
  for scope in ("input_layer", "body"):
    for old, new in zip(jax.tree.leaves(before[scope]), jax.tree.leaves(snapshots[1][scope])):
      np.testing.assert_array_equal(old, new)  # frozen for the first 2 steps
  assert any(not np.array_equal(old, new) for old, new in zip(jax.tree.leaves(before["head"]),
                                                             jax.tree.leaves(snapshots[0]["head"])))
  assert any(not np.array_equal(old, new) for old, new in zip(jax.tree.leaves(snapshots[1]["body"]),
                                                             jax.tree.leaves(snapshots[2]["body"])))


def test_predict_writes_every_test_example_in_the_leaderboard_format(sentences, tmp_path):
  config = finetune_config("task=rucola,body=transformer", sentences, **{"train.steps": 4})
  loop.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  output = tmp_path / "test_predictions.csv"
  result = predict.predict_workdir(str(tmp_path / "run"), str(output), split="test", best=True, batch_size=3)
  rows = list(csv.reader(open(output, encoding="utf-8")))
  assert rows[0] == ["id", "acceptable"]
  assert [row[0] for row in rows[1:]] == [str(index) for index in range(10)]  # every id once, in order
  assert {row[1] for row in rows[1:]} <= {"0", "1"} and result["examples"] == 10
  # Any file with the task's columns, labelled or not, predicts the same way.
  result = predict.predict_workdir(str(tmp_path / "run"), str(output), input_path=os.path.join(sentences, "dev.csv"),
                                   overwrite=True)
  assert result["examples"] == 30


def test_the_bag_keeps_dev_only_words_and_the_word_table_maps_them_to_unk(tmp_path):
  folder = write_treebank(str(tmp_path / "treebank"))
  with open(os.path.join(folder, "dev.conllu"), "a", encoding="utf-8") as handle:
    handle.write("# sent_id = only-in-dev\n1\tпароход\tпароход\tNOUN\t_\t_\t0\troot\t_\t_\n\n")
    handle.write("# sent_id = hashtags\n1\t" + "#тег" * 20 + "\t_\tNOUN\t_\t_\t0\troot\t_\t_\n\n")
  bag = experiments.build_experiment(finetune_config("task=upos,body=transformer", folder)).task
  assert "пароход" in bag.words  # composed from its n-grams, never <unk>
  assert max(len(word) for word in bag.words) <= 40  # an 80-character word would widen every bag
  word = experiments.build_experiment(finetune_config("task=upos,body=transformer", folder,
                                                **{"model.input": "word"})).task
  assert "пароход" not in word.words


# --------------------------------------------------------------------------
# SentencePiece BPE inputs (task.tokenizer="bpe"; configs/finetune.py:input=bpe).


def test_tagging_scores_each_word_on_its_first_piece(treebank, tmp_path, monkeypatch):
  import jax.numpy as jnp
  monkeypatch.setenv("JAXLM_CACHE", str(tmp_path / "cache"))
  folder = write_treebank(str(tmp_path / "treebank"))
  with open(os.path.join(folder, "dev.conllu"), "w", encoding="utf-8") as handle:  # one sentence
    handle.write("# sent_id = split-words\n1\tКот\t_\tNOUN\t_\t_\t0\troot\t_\t_\n"
                 "2\tпароходище\t_\tNOUN\t_\t_\t1\tdep\t_\t_\n3\tспит\t_\tVERB\t_\t_\t1\tdep\t_\t_\n\n")
  task = experiments.build_experiment(finetune_config("task=upos,body=transformer,input=bpe", folder)).task
  assert task.sentencepiece_model and task.words[:3] == ["<unk>", "<s>", "</s>"]
  batch = next(task.eval_batches("valid", batch_size=4))
  inputs, tags, weights = batch["inputs"][0], batch["tags"][0], batch["weights"][0]
  pieces = [task.words[token] for token in inputs[batch["mask"][0]]]
  # "</s>", then "кот" and "спит" (training words) whole; the unseen word in several pieces.
  assert pieces[0] == "</s>" and pieces[1] == "\u2581кот" and pieces[-1] == "\u2581спит"
  unseen = pieces[2:-1]
  from jaxlm.data import sentencepiece_tokenizer
  processor = sentencepiece_tokenizer.load_sentencepiece(task.sentencepiece_model)
  assert len(unseen) > 1 and processor.decode([task.words.index(piece) for piece in unseen]) == "пароходище"
  first = [1, 2, 2 + len(unseen)]  # the positions that score the three words
  expected_weights = np.zeros(task.length)
  expected_weights[first] = 1
  np.testing.assert_array_equal(weights, expected_weights)
  noun, verb = task.tags.index("NOUN"), task.tags.index("VERB")
  assert list(tags[first]) == [noun, noun, verb] and not tags[np.setdiff1d(np.arange(task.length), first)].any()

  def accuracy(predicted):  # predicted tag per position -> UPOS accuracy over the gold words
    logits = jnp.asarray(np.eye(len(task.tags))[predicted][None] * 10.0, jnp.float32)
    return task.summarise(jax.device_get(task.eval_sums(logits, jax.tree.map(lambda x: x[:1], batch))))

  # Gold on the first pieces; the split word's other pieces wrong (VERB): every word right (3/3).
  predicted = np.full(task.length, verb)
  predicted[first] = [noun, noun, verb]
  summary = accuracy(predicted)
  assert summary["accuracy"] == 1.0 and summary["words"] == 3
  # The split word wrong on its first piece, right on all its others: 2/3.
  predicted[:] = noun
  predicted[first] = [noun, verb, verb]
  assert accuracy(predicted)["accuracy"] == pytest.approx(2 / 3)
  # A word whose first piece is cut off counts as wrong, as in word inputs.
  short = experiments.build_experiment(finetune_config("task=upos,body=transformer,input=bpe", folder,
                                                 **{"task.max_length": first[2]})).task
  cut = next(short.eval_batches("valid", batch_size=4))
  assert cut["weights"][0].sum() == 2 and cut["gold_words"][0] == 3


def test_a_bpe_language_model_gives_its_pieces_to_the_fine_tuning_run(cache_dir, sentences, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXLM_CACHE", cache_dir)
  corpus = write_tiny_corpus(str(tmp_path / "corpus"))
  pre_trained = smoke_config(corpus, cache_dir, **{"train.steps": 2, "model.transformer.max_length": 16,
                                                   "data.tokenizer": "bpe", "data.bpe_vocab_size": 320})
  pre_trained.model.width = 128  # configs/finetune.py's width
  lm = str(tmp_path / "lm")
  loop.train_and_evaluate(pre_trained, lm, progress=False)
  model_file = os.path.join(lm, checkpoint.SENTENCEPIECE_FILE)
  assert checkpoint.sentencepiece_path(lm) == model_file  # the LM run keeps its .model
  spec = {"init.checkpoint": lm, "model.width": 128, "model.transformer.causal": True,
          "model.transformer.positions": "learned", "train.steps": 3, "train.eval_every": 3}
  config = finetune_config("task=rucola,body=transformer,start=checkpoint,input=bpe", sentences, **spec)
  workdir = str(tmp_path / "rucola")
  summary = loop.train_and_evaluate(config, workdir, progress=False)
  # The task's texts became the LM's pieces (Russian through byte fallback), and the fine-tuned
  # run keeps the same model for whoever starts from it next.
  assert checkpoint.load_words(workdir) == checkpoint.load_words(lm)
  assert open(os.path.join(workdir, checkpoint.SENTENCEPIECE_FILE), "rb").read() == open(model_file, "rb").read()
  (valid,) = evaluate.evaluate_workdir(workdir, splits=("valid",))
  assert valid["mcc"] == pytest.approx(summary["mcc"], abs=1e-6) and valid["examples"] == 30

  # A fine-tuning run whose tokenizer is not the checkpoint's is refused, naming the fix.
  with pytest.raises(ValueError, match="task.tokenizer='bpe'"):
    experiments.build_experiment(finetune_config("task=rucola,body=transformer,start=checkpoint", sentences,
                                           **{"init.checkpoint": lm}))
  words_only = tmp_path / "words_lm"
  words_only.mkdir()
  saved = checkpoint.load_config(lm)
  saved.data.tokenizer = "word"
  (words_only / checkpoint.CONFIG_FILE).write_text(saved.to_json())
  (words_only / checkpoint.VOCABULARY_FILE).write_text(open(os.path.join(lm, checkpoint.VOCABULARY_FILE)).read())
  bpe_config = lambda workdir: finetune_config("task=rucola,body=transformer,start=checkpoint,input=bpe",
                                               sentences, **{"init.checkpoint": str(workdir)})
  with pytest.raises(ValueError, match="pre-trained on words"):
    experiments.build_experiment(bpe_config(words_only))
  saved.data.tokenizer = "bpe"  # a BPE run saved without its .model
  (words_only / checkpoint.CONFIG_FILE).write_text(saved.to_json())
  with pytest.raises(FileNotFoundError, match="no sentencepiece.model"):
    experiments.build_experiment(bpe_config(words_only))
  # Another run's .model (the task-trained one) does not fit the vocabulary.
  other = experiments.build_experiment(finetune_config("task=rucola,body=transformer,input=bpe", sentences)).task
  with open(other.sentencepiece_model, "rb") as source:
    (words_only / checkpoint.SENTENCEPIECE_FILE).write_bytes(source.read())
  with pytest.raises(ValueError, match="does not match"):
    experiments.build_experiment(bpe_config(words_only))


def test_bpe_tagging_fine_tunes_and_evaluates(treebank, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXLM_CACHE", str(tmp_path / "cache"))
  config = finetune_config("task=upos,body=lstm,input=bpe", treebank, **{"train.steps": 3, "train.eval_every": 3})
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  # Evaluation reads the workdir's own sentencepiece.model: with the cache emptied, nothing is retrained.
  monkeypatch.setenv("JAXLM_CACHE", str(tmp_path / "empty_cache"))
  from jaxlm.data import sentencepiece_tokenizer

  def no_training(*args, **kwargs):
    raise AssertionError("evaluation retrained SentencePiece instead of reading the workdir's model")

  monkeypatch.setattr(sentencepiece_tokenizer, "train_sentencepiece", no_training)
  (valid,) = evaluate.evaluate_workdir(str(tmp_path / "run"), splits=("valid",))
  assert valid["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-6) and 0 <= valid["accuracy"] <= 1
  config.task.sentencepiece_model = str(tmp_path / "missing.model")
  with pytest.raises(FileNotFoundError, match=r"task\.sentencepiece_model=.*missing\.model"):
    experiments.build_experiment(config)


def test_trimmed_batches_fit_their_longest_sentence_and_score_as_full_ones(sentences, treebank):
  from jaxlm.training import evaluation
  for arg, folder in (("task=rucola,body=fasttext", sentences), ("task=upos,body=fasttext", treebank)):
    trimmed = experiments.build_experiment(finetune_config(arg, folder, **{"task.head_dropout": 0.0}))
    full = experiments.build_experiment(finetune_config(arg, folder, **{"task.length_multiple": 0,
                                                                        "task.head_dropout": 0.0}))
    task, length = trimmed.task, trimmed.task.length
    assert task.length_multiple == 4 and full.task.length_multiple == 0
    lengths = task.example_lengths("train")
    for step in range(6):
      batch = task.train_batch(step, seed=0, batch_size=8)
      indices = example_batches.train_indices(step, seed=0, batch_size=8, num_examples=task.num_examples("train"))
      positions = batch["inputs"].shape[1]
      assert positions % 4 == 0 or positions == length
      assert lengths[indices].max() <= positions < lengths[indices].max() + 4
      # Each process's rows of a batch have the global batch's length.
      halves = [task.train_batch(step, seed=0, batch_size=8, process_index=index, process_count=2)
                for index in range(2)]
      assert {half["inputs"].shape[1] for half in halves} == {positions}
      untrimmed = full.task.train_batch(step, seed=0, batch_size=8)
      np.testing.assert_array_equal(untrimmed["inputs"][:, :positions], batch["inputs"])
      assert not untrimmed["mask"][:, positions:].any()
    assert {batch["inputs"].shape[1] for batch in task.eval_batches("valid", batch_size=4)} != {length}
    state = experiments.init_experiment_state(trimmed)
    scores = [evaluation.make_evaluator(experiment)(state, "valid", batch_size=4) for experiment in (trimmed, full)]
    assert scores[0]["loss"] == pytest.approx(scores[1]["loss"], rel=1e-5)
    assert scores[0]["accuracy"] == scores[1]["accuracy"]
  with pytest.raises(errors.ConfigError, match=r"task.length_multiple=-1"):
    experiments.build_experiment(finetune_config("task=rucola,body=fasttext", sentences,
                                                 **{"task.length_multiple": -1}))
