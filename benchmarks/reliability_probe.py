"""Runs every launcher on bad inputs and faults, and tabulates what each said and what it changed.

  python benchmarks/reliability_probe.py --root=/tmp/probe --output=/tmp/probe.md

Builds its fixtures in --root (emptied first): a trained quickstart smoke workdir, a tiny
RuCoLA-shaped fine-tuning run, a masked-LM smoke run to start fine-tuning from, and data
files with one deliberate fault each. Then each case runs as a subprocess from the
repository root, as a user would type it, and the table records its exit status, the first
line it printed (stderr, or stdout when stderr is empty), whether a traceback appears
anywhere in its output, and which files of the folders it was given changed (a byte
snapshot before and after). Each case says what it should do: "refused" (exit 1, one line
`launch/<name>.py: ...`, nothing changed), "works" (exit 0, nothing changed) or a change
that is intended (an allowed resume); the last column lists every way a case did otherwise.

Whether a message names the file, key or value and what to do is read by a person: the
script only sets the lines side by side. Cases are cheap: most fail before any training.
"""

import csv
import dataclasses
import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable

from absl import app, flags

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_ROOT = flags.DEFINE_string("root", "/tmp/probe", "Scratch folder for the fixtures and workdirs (emptied first).")
_OUTPUT = flags.DEFINE_string("output", None, "The markdown file to write the table to.", required=True)
_ONLY = flags.DEFINE_list("only", [], "Run only the cases with these names (the fixtures are built anyway).")
_TIMEOUT = flags.DEFINE_integer("timeout", 600, "Seconds before a case is stopped and recorded as hung.")

QUICKSTART = "--config=configs/quickstart.py:smoke"
FINETUNE = "--config=configs/finetune.py:task=rucola,body=fasttext,smoke"
FIRST_LINE_CHARACTERS = 160
# Folders the cases name as new workdirs or outputs: removed after each case (once compared).
SCRATCH = ("new", "nowhere", "no_folder", "grid", "trials")


@dataclasses.dataclass
class Case:
  """One command and what it should do.

  name: a short id (--only).
  launcher: the script under launch/.
  arguments: its flags; "{R}" stands for --root.
  watch: folders under --root whose files must not change (or, with `changes`, may).
  expect: "refused" (exit 1 with the launcher's one line) or "works" (exit 0).
  changes: "" when nothing under `watch` may change; otherwise the change the case intends to
    make in watch[0] (the other folders must still not change).
  prepare, restore: what to do to the fixtures just before and after the command.
  """
  name: str
  launcher: str
  arguments: list
  watch: tuple = ()
  expect: str = "refused"
  changes: str = ""
  prepare: Callable | None = None
  restore: Callable | None = None


# ---------------------------------------------------------------------------------------------
# Fixtures: data files written here (no jaxlm import: the probe only runs the launchers).

WORDS = ["кот", "пёс", "дом", "лес", "река", "гора", "да", "нет", "идёт", "спит", "бежит", "ест"]
TAGS = {"т": "VERB", "с": "NOUN", "м": "NOUN", "а": "NOUN"}


def sentences(count: int, seed: int) -> list:
  """`count` sentences of 2-8 words, the same for the same seed (a linear congruential walk)."""
  state, result = seed + 1, []
  for _ in range(count):
    state = (state * 1103515245 + 12345) % 2**31
    length = 2 + state % 7
    words = []
    for _ in range(length):
      state = (state * 1103515245 + 12345) % 2**31
      words.append(WORDS[state % len(WORDS)])
    result.append(words)
  return result


def write_classification(folder: str, *, label_column: bool = True) -> None:
  """RuCoLA's file names and columns: id,sentence,acceptable (test.csv unlabelled)."""
  os.makedirs(folder, exist_ok=True)
  sizes = {"in_domain_train.csv": 120, "in_domain_dev.csv": 30, "out_of_domain_dev.csv": 20, "test.csv": 10}
  for seed, (name, size) in enumerate(sizes.items()):
    labelled = label_column and name != "test.csv"
    with open(os.path.join(folder, name), "w", encoding="utf-8", newline="") as handle:
      writer = csv.writer(handle)
      writer.writerow(["id", "sentence"] + (["acceptable"] if labelled else []))
      for index, words in enumerate(sentences(size, seed)):
        label = ["1" if "да" in words else "0"] if labelled else []
        writer.writerow([str(index), " ".join(words).capitalize() + "."] + label)


def write_treebank(folder: str) -> None:
  """UD Taiga's file names; the dev file's last sentence has a line of 3 fields instead of 10."""
  os.makedirs(folder, exist_ok=True)
  for seed, split in enumerate(("train", "dev", "test")):
    with open(os.path.join(folder, f"ru_taiga-ud-{split}.conllu"), "w", encoding="utf-8") as handle:
      for index, words in enumerate(sentences(20, seed)):
        handle.write(f"# sent_id = {split}-{index}\n# text = {' '.join(words)}\n")
        for position, word in enumerate(words, start=1):
          handle.write(f"{position}\t{word}\t{word}\t{TAGS.get(word[-1], 'PART')}\t_\t_\t0\tdep\t_\t_\n")
        handle.write("\n")
      if split == "dev":
        handle.write("# sent_id = dev-broken\n1\tкот\tкот\n\n")


def write_squad(folder: str) -> None:
  """xquad.ru.json of 4 one-paragraph articles; question q2's answer_start is 5 characters off."""
  os.makedirs(folder, exist_ok=True)
  articles = [
      ("Пушкин родился в Москве в 1799 году.", [("q0", "Где родился Пушкин?", "в Москве")]),
      ("Волга впадает в Каспийское море.", [("q1", "Куда впадает Волга?", "в Каспийское море")]),
      ("Байкал находится в Сибири, его глубина 1642 метра.", [("q2", "Какова глубина Байкала?", "1642 метра")]),
      ("Эрмитаж основала Екатерина Вторая в 1764 году.", [("q3", "Кто основал Эрмитаж?", "Екатерина Вторая")]),
  ]
  data = []
  for index, (context, questions) in enumerate(articles):
    qas = [{"id": key, "question": question,
            "answers": [{"text": answer, "answer_start": context.index(answer) + (5 if key == "q2" else 0)}]}
           for key, question, answer in questions]
    data.append({"title": f"article {index}", "paragraphs": [{"context": context, "qas": qas}]})
  with open(os.path.join(folder, "xquad.ru.json"), "w", encoding="utf-8") as handle:
    json.dump({"version": "1.1", "data": data}, handle, ensure_ascii=False)


def truncate_largest_file(step_directory: str) -> None:
  """A checkpoint cut short, as by a full disk or a copy that stopped: its largest file to 1,000 bytes."""
  paths = [os.path.join(folder, name) for folder, _, names in os.walk(step_directory) for name in names]
  with open(max(paths, key=os.path.getsize), "r+b") as handle:
    handle.truncate(1000)


def set_immutable(path: str, immutable: bool) -> None:
  """chattr +i / -i on every folder under `path`: unwritable even for root, which ignores modes."""
  folders = [folder for folder, _, _ in os.walk(path)]
  subprocess.run(["chattr", "+i" if immutable else "-i", *folders], check=True, capture_output=True)


# ---------------------------------------------------------------------------------------------
# Running a command and comparing snapshots.


EMPTY_EVENTS_FILE_BYTES = 64  # a TensorBoard events file with its header record only (40 bytes)


def snapshot(folder: str) -> dict | None:
  """{relative path: (size, sha1 of its bytes)} of every file under `folder` (None: no such folder)."""
  def entry(path):
    with open(path, "rb") as handle:
      content = handle.read()
    return len(content), hashlib.sha1(content).hexdigest()
  if not os.path.isdir(folder):
    return None if not os.path.exists(folder) else {"": entry(folder)}
  return {os.path.relpath(os.path.join(parent, name), folder): entry(os.path.join(parent, name))
          for parent, _, names in os.walk(folder) for name in names}


def differences(name: str, before: dict | None, after: dict | None) -> list:
  """What changed in folder `name`, grouped by checkpoint step (+ new, - removed, ~ modified).
  New TensorBoard files that hold nothing but their header end in "(empty)": no data changed."""
  if before == after:
    return []
  if before is None:
    return [f"+{name}/ (created)"]
  if after is None:
    return [f"-{name}/ (removed)"]
  marks, sizes = {}, {}
  for path in set(before) | set(after):
    if before.get(path) == after.get(path):
      continue
    mark = "+" if path not in before else "-" if path not in after else "~"
    parts = path.split(os.sep)
    group = os.sep.join(parts[:2]) if parts[0] in ("checkpoints", "damaged_checkpoints") else parts[0]
    if parts[0].startswith("events.out.tfevents"):
      group = "events.out.tfevents.*"
    marks.setdefault(group, set()).add(mark)
    sizes.setdefault(group, []).append(after[path][0] if path in after else None)
  lines = []
  for group, mark in sorted(marks.items()):
    empty = (group == "events.out.tfevents.*" and mark == {"+"}
             and all(size <= EMPTY_EVENTS_FILE_BYTES for size in sizes[group]))
    lines.append(f"{''.join(sorted(mark))}{name}/{group}" + (" (empty)" if empty else ""))
  return lines


def run_command(launcher: str, arguments: list, root: str) -> dict:
  """Runs launch/<launcher> from the repository root; its exit status, output and telling lines."""
  command = [sys.executable, os.path.join("launch", launcher), *[argument.format(R=root) for argument in arguments]]
  environment = dict(os.environ)
  environment.pop("JAXLM_TRACEBACK", None)  # the user's view: one line, no traceback
  started = time.time()
  try:
    finished = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True,
                              timeout=_TIMEOUT.value)
    exit_code, stdout, stderr = finished.returncode, finished.stdout, finished.stderr
  except subprocess.TimeoutExpired as expired:
    exit_code = "hung"
    stdout, stderr = (text.decode() if isinstance(text, bytes) else text or "" for text in (expired.stdout,
                                                                                              expired.stderr))
  lines = [line for line in stderr.splitlines() if line.strip()] or [line for line in stdout.splitlines()
                                                                      if line.strip()]
  program = f"launch/{launcher}: "
  launcher_lines = [line for line in stderr.splitlines() if line.startswith(program)]
  return {"exit": exit_code, "stdout": stdout, "stderr": stderr, "first_line": lines[0] if lines else "",
          "launcher_line": launcher_lines[0] if launcher_lines else "", "seconds": time.time() - started}


def shown(text: str, root: str) -> str:
  return text.replace(root, "$R")


def display_command(launcher: str, arguments: list, root: str) -> str:
  return shown(shlex.join(["python", f"launch/{launcher}", *[argument.format(R=root) for argument in arguments]]),
               root)


# ---------------------------------------------------------------------------------------------
# The fixtures and the cases.


def build_fixtures(root: str) -> list:
  """Writes the data and trains the workdirs the cases use; returns (command, exit, seconds) rows."""
  write_classification(os.path.join(root, "cls"))
  write_classification(os.path.join(root, "cls_nolabel"), label_column=False)
  write_treebank(os.path.join(root, "treebank_bad"))
  write_squad(os.path.join(root, "squad_bad"))
  with open(os.path.join(root, "new_sentences.csv"), "w", encoding="utf-8", newline="") as handle:
    csv.writer(handle).writerows([["id", "sentence"], ["a", "Кот спит да."], ["b", "Пёс ест."]])
  with open(os.path.join(root, "a_file"), "w") as handle:
    handle.write("not a folder\n")
  with open(os.path.join(root, "existing.csv"), "w") as handle:
    handle.write("id,acceptable\nkeep,me\n")
  os.makedirs(os.path.join(root, "out"))
  trainings = [
      ("train.py", [QUICKSTART, "--workdir={R}/lm"]),
      ("train.py", [FINETUNE, "--config.task.path={R}/cls", "--workdir={R}/ft"]),
      ("train.py", ["--config=configs/ru_mlm.py:input=bag,body=transformer,smoke",
                    "--config.data.path=jaxlm/data/ruslit-sample", "--workdir={R}/mlm"]),
  ]
  rows = []
  for launcher, arguments in trainings:
    result = run_command(launcher, arguments, root)
    rows.append((display_command(launcher, arguments, root), result["exit"], result["seconds"]))
    if result["exit"] != 0:
      raise SystemExit(f"fixture failed: {rows[-1][0]}\n{result['stderr']}")
  # Copies to damage or change, so each case starts from a whole workdir.
  for source, copies in (("lm", ("lm_clip", "lm_sgd", "lm_trunc", "lm_dead", "lm_readonly")),
                         ("mlm", ("mlm_trunc", "mlm_dead"))):
    for copy in copies:
      shutil.copytree(os.path.join(root, source), os.path.join(root, copy))
  for workdir in ("lm_trunc", "lm_dead", "mlm_trunc", "mlm_dead"):
    steps = sorted(int(name) for name in os.listdir(os.path.join(root, workdir, "checkpoints")) if name.isdigit())
    for step in steps[-1:] if workdir.endswith("trunc") else steps:
      truncate_largest_file(os.path.join(root, workdir, "checkpoints", str(step)))
  os.makedirs(os.path.join(root, "readonly_empty"))
  return rows


def cases(root: str) -> list:
  path = lambda *parts: os.path.join(root, *parts)

  training_file = path("cls", "in_domain_train.csv")
  saved_bytes = {}

  def append_to_training_file():
    with open(training_file, "rb") as handle:
      saved_bytes["train"] = handle.read()
    with open(training_file, "ab") as handle:
      handle.write("999,Новая строка да.,1\r\n".encode())

  def undo_append():  # the bytes as they were: csv's \r\n line ends and all
    with open(training_file, "wb") as handle:
      handle.write(saved_bytes.pop("train"))

  def write_foreign():  # a folder another program made; a case that overwrites it must not harm the next
    shutil.rmtree(path("foreign"), ignore_errors=True)
    os.makedirs(path("foreign"))
    with open(path("foreign", "config.json"), "w") as handle:
      json.dump({"foo": 1}, handle)

  move_data_away = lambda: os.rename(path("cls"), path("cls_moved"))
  move_data_back = lambda: os.rename(path("cls_moved"), path("cls"))
  lm, ft = ("lm",), ("ft",)
  clip = [QUICKSTART, "--workdir={R}/lm_clip", "--config.optim.clip_norm=0", "--config.train.steps=9",
          "--allow_change=optim.clip_norm,train.steps"]
  sgd = [QUICKSTART, "--workdir={R}/lm_sgd", "--config.optim.name=sgd", "--config.train.steps=9",
         "--allow_change=optim.name,train.steps"]
  init = lambda workdir: ["--config=configs/finetune.py:task=rucola,body=transformer,start=checkpoint,smoke",
                          "--config.task.path={R}/cls", f"--config.init.checkpoint={{R}}/{workdir}",
                          f"--workdir={{R}}/ft_from_{workdir}"]
  return [
      # train.py: the config flag and its overrides.
      Case("config-misspelled-file", "train.py", ["--config=configs/quickstrat.py:smoke", "--workdir={R}/new"],
           ("new",)),
      Case("config-unknown-variant", "train.py", ["--config=configs/quickstart.py:tiny", "--workdir={R}/new"],
           ("new",)),
      Case("override-misspelled-key", "train.py", [QUICKSTART, "--config.optim.learning_rate=0.1",
                                                   "--workdir={R}/new"], ("new",)),
      Case("override-bad-type", "train.py", [QUICKSTART, "--config.optim.lr=fast", "--workdir={R}/new"], ("new",)),
      Case("override-float-for-int", "train.py", [QUICKSTART, "--config.train.steps=1.5", "--workdir={R}/new"],
           ("new",)),
      Case("override-unknown-choice", "train.py", [QUICKSTART, "--config.model.family=rnn", "--workdir={R}/new"],
           ("new",)),
      Case("workdir-flag-missing", "train.py", [QUICKSTART]),
      Case("workdir-is-a-file", "train.py", [QUICKSTART, "--workdir={R}/a_file"], ("a_file",)),
      Case("workdir-foreign-config", "train.py", [QUICKSTART, "--workdir={R}/foreign"], ("foreign",),
           prepare=write_foreign),
      Case("workdir-unwritable", "train.py", [QUICKSTART, "--workdir={R}/readonly_empty"], ("readonly_empty",),
           prepare=lambda: set_immutable(path("readonly_empty"), True),
           restore=lambda: set_immutable(path("readonly_empty"), False)),
      # train.py: a workdir of another run, and the changes a resume may make.
      Case("resume-other-seed", "train.py", [QUICKSTART, "--workdir={R}/lm", "--config.seed=1"], lm),
      Case("resume-other-batch", "train.py", [QUICKSTART, "--workdir={R}/lm", "--config.train.batch_size=4"], lm),
      Case("resume-other-optimiser", "train.py", [QUICKSTART, "--workdir={R}/lm", "--config.optim.name=sgd"], lm),
      Case("resume-finished-run-again", "train.py", [QUICKSTART, "--workdir={R}/lm"], lm, expect="works"),
      Case("allowed-clip-norm-change", "train.py", clip, ("lm_clip",), expect="works",
           changes="resumes at 6 with a new optimiser state and trains to 9: checkpoint 9 and its logs added, "
                   "3 dropped by keep_checkpoints=2, config.json rewritten"),
      Case("allowed-clip-norm-change-again", "train.py", clip, ("lm_clip",), expect="works"),
      Case("allowed-clip-norm-then-original", "train.py", [QUICKSTART, "--workdir={R}/lm_clip"], ("lm_clip",)),
      Case("allowed-clip-norm-then-evaluate-6", "evaluate.py", ["--workdir={R}/lm_clip", "--step=6",
                                                                "--split=valid"], ("lm_clip",), expect="works"),
      Case("allowed-optimiser-change", "train.py", sgd, ("lm_sgd",), expect="works",
           changes="resumes at 6 with a new (SGD) optimiser state and trains to 9, as above"),
      Case("allowed-optimiser-change-again", "train.py", sgd, ("lm_sgd",), expect="works"),
      Case("allowed-optimiser-then-original", "train.py", [QUICKSTART, "--workdir={R}/lm_sgd"], ("lm_sgd",)),
      Case("allowed-optimiser-then-evaluate-6", "evaluate.py", ["--workdir={R}/lm_sgd", "--step=6",
                                                                "--split=valid"], ("lm_sgd",), expect="works"),
      Case("nan-run", "train.py", [QUICKSTART, "--workdir={R}/nan", "--config.optim.lr=inf"], ("nan",),
           changes="a new workdir: its config and logs, and no checkpoint"),
      # train.py: data.
      Case("lm-data-path-missing", "train.py", [QUICKSTART, "--config.data.path={R}/nowhere", "--workdir={R}/new"],
           ("new",)),
      Case("task-path-missing", "train.py", [FINETUNE, "--config.task.path={R}/nowhere", "--workdir={R}/new"],
           ("new",)),
      Case("task-path-not-given", "train.py", [FINETUNE, "--workdir={R}/new"], ("new",)),
      Case("csv-without-label-column", "train.py", [FINETUNE, "--config.task.path={R}/cls_nolabel",
                                                    "--workdir={R}/new"], ("new", "cls_nolabel")),
      Case("conllu-malformed-line", "train.py", ["--config=configs/finetune.py:task=upos,body=fasttext,smoke",
                                                 "--config.task.path={R}/treebank_bad", "--workdir={R}/new"],
           ("new", "treebank_bad")),
      Case("squad-offsets-off", "train.py", ["--config=configs/finetune.py:task=xquad_ru,body=fasttext,smoke",
                                             "--config.task.path={R}/squad_bad", "--workdir={R}/new"],
           ("new", "squad_bad")),
      Case("changed-data-train", "train.py", [FINETUNE, "--config.task.path={R}/cls", "--workdir={R}/ft"], ft,
           prepare=append_to_training_file, restore=undo_append),
      Case("changed-data-evaluate", "evaluate.py", ["--workdir={R}/ft", "--split=valid"], ft,
           prepare=append_to_training_file, restore=undo_append),
      Case("changed-data-evaluate-allowed", "evaluate.py", ["--workdir={R}/ft", "--split=valid",
                                                            "--allow_data_change"], ft, expect="works",
           prepare=append_to_training_file, restore=undo_append),
      Case("changed-data-predict-split", "predict.py", ["--workdir={R}/ft", "--split=test",
                                                        "--output={R}/out/changed.csv"], ("ft", "out"),
           prepare=append_to_training_file, restore=undo_append),
      # train.py: a fine-tuning start from a pre-trained workdir.
      Case("init-checkpoint-missing", "train.py", init("nowhere"), ("ft_from_nowhere",)),
      Case("init-checkpoint-not-a-workdir", "train.py", init("cls"), ("ft_from_cls", "cls")),
      Case("init-checkpoint-latest-damaged", "train.py", init("mlm_trunc"), ("ft_from_mlm_trunc", "mlm_trunc"),
           expect="works", changes="a new fine-tuning workdir from step 3 of the pre-trained run (6 is damaged)"),
      Case("init-checkpoint-all-damaged", "train.py", init("mlm_dead"), ("ft_from_mlm_dead", "mlm_dead")),
      # The quickstart smoke LM has the fine-tuning smoke encoder's shapes: the grid's causal-LM start.
      Case("init-checkpoint-causal-lm", "train.py", init("lm"), ("ft_from_lm", "lm"), expect="works",
           changes="a new fine-tuning workdir started from the language model's input layer and body"),
      # Damaged checkpoints of the workdir itself.
      Case("evaluate-latest-truncated", "evaluate.py", ["--workdir={R}/lm_trunc", "--split=valid"], ("lm_trunc",),
           expect="works"),
      Case("train-latest-truncated", "train.py", [QUICKSTART, "--workdir={R}/lm_trunc"], ("lm_trunc",),
           expect="works", changes="step 6 moved to damaged_checkpoints/ and retrained from 3"),
      Case("evaluate-all-damaged", "evaluate.py", ["--workdir={R}/lm_dead", "--split=valid"], ("lm_dead",)),
      Case("train-all-damaged", "train.py", [QUICKSTART, "--workdir={R}/lm_dead"], ("lm_dead",),
           changes="every damaged step moved to damaged_checkpoints/"),
      Case("train-all-damaged-again", "train.py", [QUICKSTART, "--workdir={R}/lm_dead"], ("lm_dead",),
           expect="works", changes="none readable is left: the run starts again from step 0"),
      # evaluate.py
      Case("evaluate-missing-workdir", "evaluate.py", ["--workdir={R}/nowhere"], ("nowhere",)),
      Case("evaluate-workdir-is-a-file", "evaluate.py", ["--workdir={R}/a_file"], ("a_file",)),
      Case("evaluate-foreign-config", "evaluate.py", ["--workdir={R}/foreign"], ("foreign",), prepare=write_foreign),
      Case("evaluate-step-not-kept", "evaluate.py", ["--workdir={R}/lm", "--step=4"], lm),
      Case("evaluate-step-and-best", "evaluate.py", ["--workdir={R}/lm", "--step=3", "--best"], lm),
      Case("evaluate-step-not-a-number", "evaluate.py", ["--workdir={R}/lm", "--step=last"], lm),
      Case("evaluate-misspelled-split", "evaluate.py", ["--workdir={R}/lm", "--split=tset"], lm),
      Case("evaluate-unlabelled-split", "evaluate.py", ["--workdir={R}/ft", "--split=test"], ft),
      Case("evaluate-data-path-missing", "evaluate.py", ["--workdir={R}/lm", "--data_path={R}/nowhere"], lm),
      Case("evaluate-read-only-workdir", "evaluate.py", ["--workdir={R}/lm_readonly", "--split=valid"],
           ("lm_readonly",), expect="works", prepare=lambda: set_immutable(path("lm_readonly"), True),
           restore=lambda: set_immutable(path("lm_readonly"), False)),
      # predict.py
      Case("predict-output-config-json", "predict.py", ["--workdir={R}/ft", "--output={R}/ft/config.json"], ft),
      Case("predict-output-new-file-in-workdir", "predict.py", ["--workdir={R}/ft", "--output={R}/ft/p.csv"], ft),
      Case("predict-output-existing-file", "predict.py", ["--workdir={R}/ft", "--output={R}/existing.csv"],
           ("ft", "existing.csv")),
      Case("predict-output-missing-folder", "predict.py", ["--workdir={R}/ft", "--output={R}/no_folder/p.csv"],
           ("ft", "no_folder")),
      Case("predict-output-is-a-folder", "predict.py", ["--workdir={R}/ft", "--output={R}/out"], ("ft", "out")),
      Case("predict-output-unwritable-folder", "predict.py", ["--workdir={R}/ft",
                                                              "--output={R}/readonly_empty/p.csv"],
           ("ft", "readonly_empty"), prepare=lambda: set_immutable(path("readonly_empty"), True),
           restore=lambda: set_immutable(path("readonly_empty"), False)),
      Case("predict-output-flag-missing", "predict.py", ["--workdir={R}/ft"], ft),
      Case("predict-input-new-file", "predict.py", ["--workdir={R}/ft", "--input={R}/new_sentences.csv",
                                                    "--output={R}/out/new.csv"], ("ft",), expect="works"),
      # The task is still built from the config's data files (README, predict.py): refused, naming the file.
      Case("predict-input-training-data-moved", "predict.py", ["--workdir={R}/ft", "--input={R}/new_sentences.csv",
                                                               "--output={R}/out/moved.csv"], ("ft",),
           prepare=move_data_away, restore=move_data_back),
      Case("predict-input-missing", "predict.py", ["--workdir={R}/ft", "--input={R}/nowhere.csv",
                                                   "--output={R}/out/missing.csv"], ("ft", "out")),
      Case("predict-input-without-text-column", "predict.py", ["--workdir={R}/ft", "--input={R}/existing.csv",
                                                               "--output={R}/out/columns.csv"], ("ft", "out")),
      Case("predict-misspelled-split", "predict.py", ["--workdir={R}/ft", "--split=tset",
                                                      "--output={R}/out/tset.csv"], ("ft", "out")),
      Case("predict-language-model", "predict.py", ["--workdir={R}/lm", "--output={R}/out/lm.csv"], ("lm", "out")),
      # sample.py
      Case("sample-max-tokens-huge", "sample.py", ["--workdir={R}/lm", "--max_tokens=100000000"], lm),
      Case("sample-fine-tuning-workdir", "sample.py", ["--workdir={R}/ft", "--prompt=кот"], ft),
      Case("sample-missing-workdir", "sample.py", ["--workdir={R}/nowhere"], ("nowhere",)),
      Case("sample-foreign-config", "sample.py", ["--workdir={R}/foreign"], ("foreign",), prepare=write_foreign),
      Case("sample-top-p-above-one", "sample.py", ["--workdir={R}/lm", "--top_p=1.5"], lm),
      Case("sample-negative-temperature", "sample.py", ["--workdir={R}/lm", "--temperature=-1"], lm),
      Case("sample-step-not-kept", "sample.py", ["--workdir={R}/lm", "--step=5"], lm),
      # report.py
      Case("report-missing-run", "report.py", ["--run=a={R}/nowhere", "--output={R}/out/report.html"],
           ("nowhere", "out")),
      Case("report-run-without-name", "report.py", ["--run={R}/lm", "--output={R}/out/report.html"], ("lm", "out")),
      Case("report-foreign-config", "report.py", ["--run=a={R}/foreign", "--output={R}/out/report.html"],
           ("foreign", "out"), prepare=write_foreign),
      Case("report-output-missing-folder", "report.py", ["--run=a={R}/lm", "--output={R}/no_folder/report.html"],
           ("no_folder", "lm"), expect="works", changes="the folder is created and the report written"),
      # compare.py
      Case("compare-misspelled-grid-override", "compare.py", ["--grid=configs/compare_ru.py:smoke",
                                                              "--grid.seed=0", "--workdir={R}/grid"], ("grid",)),
      Case("compare-missing-grid", "compare.py", ["--grid=configs/compare_rus.py", "--workdir={R}/grid"],
           ("grid",)),
      Case("compare-unknown-variant", "compare.py", ["--grid=configs/compare_ru.py:tiny", "--workdir={R}/grid"],
           ("grid",)),
      Case("compare-model-config-as-grid", "compare.py", ["--grid=configs/quickstart.py:smoke",
                                                          "--workdir={R}/grid"], ("grid",)),
      Case("compare-unknown-task", "compare.py", ["--grid=configs/compare_ru.py:smoke", "--grid.tasks=rucolla",
                                                  "--workdir={R}/grid", "--dry_run"], ("grid",)),
      # fasttext.py
      Case("fasttext-no-fasttext-section", "fasttext.py", [QUICKSTART, "--output={R}/out/v.bin"], ("out",)),
      Case("fasttext-data-path-missing", "fasttext.py", ["--config=configs/ru_lm.py:smoke",
                                                         "--output={R}/out/v.bin"], ("out",)),
      Case("fasttext-misspelled-override", "fasttext.py", ["--config=configs/ru_lm.py:smoke",
                                                           "--config.fasttext.epoch=1", "--output={R}/out/v.bin"],
           ("out",)),
      # benchmark.py, benchmark_heads.py, plot.py, kill_trials.py
      Case("benchmark-unknown-variant", "benchmark.py", ["--config=configs/quickstart.py:tiny"]),
      Case("benchmark-zero-steps", "benchmark.py", [QUICKSTART, "--steps=0"]),
      Case("benchmark-misspelled-override", "benchmark.py", [QUICKSTART, "--config.train.batchsize=4"]),
      Case("benchmark_heads-vocabulary-not-a-number", "benchmark_heads.py", ["--vocab_sizes=many"]),
      Case("benchmark_heads-unknown-head", "benchmark_heads.py", ["--heads=softmaxx", "--vocab_sizes=1000",
                                                                  "--noisolate"]),
      Case("plot-missing-workdir", "plot.py", ["--run=a={R}/nowhere", "--output={R}/out/plot.png"],
           ("nowhere", "out")),
      Case("plot-pdf-output", "plot.py", ["--run=a={R}/lm", "--output={R}/out/plot.pdf"], ("lm", "out")),
      Case("plot-unknown-metric", "plot.py", ["--run=a={R}/lm", "--y=perplexty", "--output={R}/out/plot.png"],
           ("lm", "out")),
      Case("kill_trials-no-steps", "kill_trials.py", ["--overrides=train.log_every=1", "--root={R}/trials"],
           ("trials",)),
      Case("kill_trials-missing-config", "kill_trials.py", ["--config=configs/missing.py", "--trials=1",
                                                            "--root={R}/trials"]),
      Case("kill_trials-misspelled-override", "kill_trials.py", ["--overrides=train.steps=4,train.log_evry=1",
                                                                 "--trials=1", "--root={R}/trials"]),
  ]


# ---------------------------------------------------------------------------------------------


def deviations(case: Case, result: dict, changed: dict) -> list:
  """Every way the case did other than it should."""
  found = []
  output = result["stdout"] + result["stderr"]
  expected_exit = {"refused": 1, "works": 0}[case.expect]
  if result["exit"] != expected_exit:
    found.append(f"exit {result['exit']}, expected {expected_exit}")
  if "Traceback" in output:
    found.append("traceback")
  if case.expect == "refused" and result["first_line"] != result["launcher_line"]:
    later = " (it comes later)" if result["launcher_line"] else ""
    found.append(f"first line is not the launcher's one line{later}")
  allowed = case.watch[:1] if case.changes else ()
  unexpected = [line for name, lines in changed.items() if name not in allowed for line in lines]
  if any(not line.endswith("(empty)") for line in unexpected):
    found.append("files changed")
  elif unexpected:
    found.append("an empty TensorBoard events file added")
  if case.changes and not changed.get(case.watch[0]):
    found.append("the intended change did not happen")
  return found


def traceback_first(result: dict) -> bool:
  """A traceback before the user's message (or with none at all): the user reads a crash."""
  output = result["stderr"] + result["stdout"]
  if "Traceback" not in output:
    return False
  return not result["launcher_line"] or output.index("Traceback") < output.index(result["launcher_line"])


def shorten(text: str) -> str:
  return text if len(text) <= FIRST_LINE_CHARACTERS else text[:FIRST_LINE_CHARACTERS - 3] + "..."


def table_cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def main(argv):
  del argv
  root = os.path.abspath(_ROOT.value)
  if os.path.isdir(root):  # a previous probe may have left immutable folders behind
    subprocess.run(["chattr", "-R", "-i", root], capture_output=True)
  shutil.rmtree(root, ignore_errors=True)
  os.makedirs(root)
  started = datetime.datetime.now(datetime.timezone.utc)
  fixture_rows = build_fixtures(root)
  rows = []
  for case in cases(root):
    if _ONLY.value and case.name not in _ONLY.value:
      continue
    if case.prepare:
      case.prepare()
    before = {name: snapshot(os.path.join(root, name)) for name in case.watch}
    try:
      result = run_command(case.launcher, case.arguments, root)
    finally:
      if case.restore:
        case.restore()
    changed = {name: differences(name, before[name], snapshot(os.path.join(root, name))) for name in case.watch}
    found = deviations(case, result, changed)
    changed = [line for lines in changed.values() for line in lines]
    for name in SCRATCH:  # what a case left there must not meet the next case
      scratch = os.path.join(root, name)
      if os.path.isdir(scratch):
        subprocess.run(["chattr", "-R", "-i", scratch], capture_output=True)
        shutil.rmtree(scratch)
    rows.append({"name": case.name, "command": display_command(case.launcher, case.arguments, root),
                 "exit": result["exit"], "first_line": shown(result["first_line"], root),
                 "launcher_line": shown(result["launcher_line"], root),
                 "stderr_tail": shown("\n".join(result["stderr"].strip().splitlines()[-3:]), root),
                 "traceback": "Traceback" in result["stdout"] + result["stderr"],
                 "traceback_first": traceback_first(result),
                 "files": ("changed: " + ", ".join(changed) if changed else "unchanged")
                          + (f" (intended: {case.changes})" if case.changes else ""),
                 "expect": case.expect, "deviations": found, "seconds": round(result["seconds"], 1),
                 "stderr_lines": len([line for line in result["stderr"].splitlines() if line.strip()])})
    print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
  write_markdown(_OUTPUT.value, root, started, fixture_rows, rows)
  with open(os.path.splitext(_OUTPUT.value)[0] + ".jsonl", "w", encoding="utf-8") as handle:
    handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
  print(f"{len(rows)} cases, {sum(bool(row['deviations']) for row in rows)} with deviations; wrote {_OUTPUT.value}")


def write_markdown(output: str, root: str, started, fixture_rows: list, rows: list) -> None:
  tracebacks = sum(row["traceback"] for row in rows)
  tracebacks_first = sum(row["traceback_first"] for row in rows)
  buried = sum(any(found.startswith("first line is not") for found in row["deviations"]) for row in rows)
  unexpected_changes = sum("files changed" in row["deviations"] for row in rows)
  launchers = sorted({row["command"].split()[1].split("/")[1] for row in rows})
  lines = [f"`python benchmarks/reliability_probe.py --root={_ROOT.value} --output={output}` "
           f"(started {started:%Y-%m-%d %H:%M} UTC; `$R` is --root; commands run from the repository root)", "",
           f"{len(rows)} cases over {len(launchers)} launchers ({', '.join(launchers)}); "
           f"with a traceback anywhere: {tracebacks} (before the user's message, or with none: {tracebacks_first}); "
           f"refusals whose first line is not the launcher's one line: {buried}; "
           f"files changed where nothing should: {unexpected_changes}; "
           f"any deviation from the expected outcome: {sum(bool(row['deviations']) for row in rows)}.", "",
           "Fixtures:", ""]
  lines += [f"- `{command}` (exit {exit_code}, {seconds:.0f} s)" for command, exit_code, seconds in fixture_rows]
  lines += ["- copies of `$R/lm` (`lm_clip`, `lm_sgd`, `lm_trunc`, `lm_dead`, `lm_readonly`) and of `$R/mlm` "
            "(`mlm_trunc`, `mlm_dead`); `*_trunc`: the largest file of the latest checkpoint cut to 1,000 bytes, "
            "`*_dead`: of every checkpoint; `$R/cls`: RuCoLA-named CSVs (120/30/20/10 rows), `cls_nolabel` without "
            "the `acceptable` column, `treebank_bad`: a dev sentence line with 3 fields, `squad_bad`: one "
            "answer_start 5 characters off; `foreign`: a folder holding another program's `config.json` "
            "(`{\"foo\": 1}`, written again before each case that uses it); `a_file`, `existing.csv`: plain files; "
            "`readonly_empty` and `lm_readonly` made immutable (`chattr +i`) for their cases", "",
            "| command | exit | first line | traceback | files | deviations |", "|---|---|---|---|---|---|"]
  for row in rows:
    said = shorten(row["first_line"])
    if row["launcher_line"] and row["launcher_line"] != row["first_line"]:
      said += " ... then: " + shorten(row["launcher_line"])
    lines.append(f"| `{table_cell(row['command'])}` | {row['exit']} | {table_cell(said)} | "
                 f"{'yes' if row['traceback'] else 'no'} | {table_cell(row['files'])} | "
                 f"{table_cell('; '.join(row['deviations'])) or '-'} |")
  with open(output, "w", encoding="utf-8") as handle:
    handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  app.run(main)
