"""Tiny fine-tuning datasets written into a test's folder: a RuCoLA-shaped CSV, a CoNLL-U
treebank and a SQuAD v1.1 JSON file of Russian paragraphs.

The labels follow a rule a small model can learn (a sentence is "acceptable" when it
holds the word "да"; a word's tag is decided by its last letter), so training that
works shows it in a few dozen steps.
"""

import csv
import json
import os

import jax
import numpy as np

from conftest import override
from jaxlm.training import experiments, optim, steps

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


SQUAD_FILE = "qa.ru.json"
# (context, [(question id, question, answer)]) per article, one paragraph each. With
# dev_fraction 0.25 the fourth article (index 3) is dev: 4 training questions, 2 dev ones.
# Article 2's context is longer than one smoke window (16 positions); article 3's much longer.
SQUAD_ARTICLES = [
    ("Александр Пушкин родился в Москве в 1799 году.",
     [("q0", "Где родился Пушкин?", "в Москве"), ("q1", "Когда родился Пушкин?", "1799 году")]),
    ("Волга — самая длинная река Европы, она впадает в Каспийское море.",
     [("q2", "Куда впадает Волга?", "в Каспийское море")]),
    ("Байкал находится в Сибири. Это самое глубокое озеро на планете: его глубина достигает "
     "1642 метров, а вода в нём чистая и холодная.",
     [("q3", "Какова глубина Байкала?", "1642 метров")]),
    ("Эрмитаж — один из крупнейших музеев мира. Он находится в Санкт-Петербурге, на берегу Невы, "
     "в здании Зимнего дворца. Музей основала императрица Екатерина Вторая в 1764 году, когда "
     "купила коллекцию картин у берлинского купца. Сегодня в его собраниях около трёх миллионов "
     "предметов, от древнеегипетских статуй до «Чёрного квадрата» Малевича.",
     [("q4", "Кто основал Эрмитаж?", "Екатерина Вторая"), ("q5", "Какая картина Малевича есть в Эрмитаже?",
                                                           "«Чёрного квадрата»")]),
]


def squad_document(articles=SQUAD_ARTICLES) -> dict:
  """A SQuAD v1.1 document of `articles`, answer_start computed from each context."""
  data = []
  for index, (context, questions) in enumerate(articles):
    qas = [{"id": question_id, "question": question,
            "answers": [{"text": answer, "answer_start": context.index(answer)}]}
           for question_id, question, answer in questions]
    data.append({"title": f"article {index}", "paragraphs": [{"context": context, "qas": qas}]})
  return {"version": "1.1", "data": data}


def write_squad(folder: str, document: dict | None = None, name: str = SQUAD_FILE) -> str:
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
    json.dump(squad_document() if document is None else document, handle, ensure_ascii=False)
  return folder


def finetune_config(arg: str, folder: str, **overrides):
  """configs/finetune.py:<arg>,smoke pointed at `folder`, with dotted-key overrides."""
  from configs import finetune
  config = finetune.get_config(arg + ",smoke")
  config.task.path = folder
  if config.task.name == "squad":  # write_squad's file; configs/finetune.py:task=xquad_ru's dev_fraction
    config.task.file = SQUAD_FILE
    files = {}
  elif config.task.name == "classification":  # configs/finetune.py:task=rucola's splits
    files = {"train": "train.csv", "valid": "dev.csv", "valid_out_of_domain": "ood.csv", "test": "test.csv"}
  else:
    files = {"train": "train.conllu", "valid": "dev.conllu", "test": "test.conllu"}
  for split, name in files.items():
    config.task.files[split] = name
  return override(config, **overrides)


def assert_one_device_step_matches_four(config):
  """The task's first train step on 1 device and on 4 gives the same parameters and loss."""
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    experiment = experiments.build_experiment(config)
    experiment.mesh = mesh = experiments.make_mesh(devices)
    state = experiments.init_experiment_state(experiment)
    step = steps.make_train_step(experiment.model, experiment.task.loss, experiment.optimizer, mesh, state,
                                 config.seed, sparse_embeddings=optim.lazy_embeddings(config.optim))
    batch = experiment.task.train_batch(0, seed=0, batch_size=config.train.batch_size)
    state, step_metrics = step(state, experiments.global_batch(mesh, batch))
    results.append((jax.device_get(state.params), jax.device_get(step_metrics)))
  (one, metrics_one), (four, metrics_four) = results
  for left, right in zip(jax.tree.leaves(one), jax.tree.leaves(four)):
    np.testing.assert_allclose(left, right, atol=1e-5)
  np.testing.assert_allclose(metrics_one["loss_sum"], metrics_four["loss_sum"], rtol=1e-6)
