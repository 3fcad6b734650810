"""A user's mistake (a config, a data file, a workdir, a flag) is one line from every launcher:
`launch/<name>.py: <message>`, exit status 1, no traceback (jaxlm/errors.py).

Each launcher is run once on the cheapest bad input that reaches its own error, most before
anything is computed; the mistakes found while a task reads its data are checked in the
library, where they are raised, and once through launch/train.py.
"""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, smoke_config
from jaxlm import errors, tasks
from jaxlm.training import evaluate
from jaxlm.tools import generate, report
from task_fixtures import finetune_config, squad_document, write_classification, write_squad, write_treebank


def launch(script, *args, traceback=False):
  environment = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  environment.pop(errors.TRACEBACK_VARIABLE, None)
  if traceback:
    environment[errors.TRACEBACK_VARIABLE] = "1"
  return subprocess.run([sys.executable, os.path.join("launch", script), *args], cwd=REPO_ROOT, env=environment,
                        capture_output=True, text=True, timeout=120)


def assert_one_line(result, script, *expected):
  """Exit 1 and stderr's one non-empty line `launch/<script>: ...` holding each expected text."""
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 1, result.stderr
  assert len(lines) == 1 and lines[0].startswith(f"launch/{script}: "), result.stderr
  assert "Traceback" not in result.stderr + result.stdout
  for text in expected:
    assert text in lines[0], lines[0]
  return lines[0]


@pytest.fixture
def foreign_workdir(tmp_path):
  """A folder whose config.json another program wrote."""
  workdir = tmp_path / "foreign"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps({"foo": 1}))
  (workdir / "metrics.jsonl").write_text(json.dumps({"step": 1, "kind": "train", "loss": 1.0}) + "\n")
  return workdir


# (launcher, its arguments with {tmp} for the test's folder, a text its one line must hold)
LAUNCHER_MISTAKES = {
    "train-workdir-is-a-file": ("train.py", ["--config=configs/quickstart.py:smoke", "--workdir={tmp}/a_file"],
                                "--workdir {tmp}/a_file is a file, not a folder: choose a folder"),
    "evaluate-missing-workdir": ("evaluate.py", ["--workdir={tmp}/missing"], "{tmp}/missing/config.json not found"),
    "predict-missing-workdir": ("predict.py", ["--workdir={tmp}/missing", "--output={tmp}/predictions.csv"],
                                "{tmp}/missing"),
    "sample-foreign-workdir": ("sample.py", ["--workdir={tmp}/foreign"],
                               "{tmp}/foreign/config.json is not a jaxlm config: it has no 'train'/'model' section"),
    "report-missing-workdir": ("report.py", ["--run=a={tmp}/missing", "--output={tmp}/report.html"],
                               "run 'a': workdir {tmp}/missing does not exist"),
    "compare-missing-grid": ("compare.py", ["--grid=configs/missing.py", "--workdir={tmp}/grid"],
                             "config file configs/missing.py not found"),
    "fasttext-no-fasttext-section": ("fasttext.py", ["--config=configs/quickstart.py:smoke", "--output={tmp}/v.bin"],
                                     "the config has no `fasttext` section"),
    "benchmark-unknown-variant": ("benchmark.py", ["--config=configs/quickstart.py:tiny"],
                                  "unknown variant 'tiny'; known variants: ['smoke']"),
    "benchmark_heads-vocabulary-not-a-number": ("benchmark_heads.py", ["--vocab_sizes=many"],
                                                "--vocab_sizes=many: give whole numbers"),
    "plot-missing-workdir": ("plot.py", ["--run=a={tmp}/missing", "--output={tmp}/plot.png"],
                             "{tmp}/missing/metrics.jsonl does not exist"),
    "kill_trials-no-steps": ("kill_trials.py", ["--overrides=train.log_every=1", "--root={tmp}/trials"],
                             "must set train.steps=N"),
    # absl's own flag errors, and the launchers' usage checks, are one line too.
    "evaluate-step-not-a-number": ("evaluate.py", ["--workdir={tmp}/missing", "--step=last"],
                                   "flag --step=last: invalid literal for int()"),
    "evaluate-step-and-best": ("evaluate.py", ["--workdir={tmp}/foreign", "--step=3", "--best"],
                               "give --step or --best, not both"),
    "predict-no-output": ("predict.py", ["--workdir={tmp}/missing"], "--output"),
    "plot-not-an-image": ("plot.py", ["--run=a={tmp}/missing", "--output={tmp}/plot.pdf"], "give a .png or .svg"),
    "compare-unknown-cluster": ("compare.py", ["--grid=configs/compare_ru.py:smoke", "--workdir={tmp}/missing",
                                               "--cluster=pbs"], "--cluster=pbs: give one of ('slurm', 'local')"),
    "compare-a-training-config": ("compare.py", ["--grid=configs/quickstart.py:smoke", "--workdir={tmp}/grid"],
                                  "it is not a grid config"),
    # The seed is an int32 argument of the compiled init and step.
    "train-seed-out-of-range": ("train.py", ["--config=configs/quickstart.py:smoke", "--workdir={tmp}/missing",
                                             "--config.seed=-1"], "seed=-1: give a seed from 0 to 2147483647"),
    "train-foreign-config-json": ("train.py", ["--config=configs/quickstart.py:smoke", "--workdir={tmp}/foreign"],
                                  "{tmp}/foreign/config.json is not a jaxlm config"),
}


@pytest.mark.parametrize("mistake", list(LAUNCHER_MISTAKES))
def test_every_launcher_reports_a_user_error_in_one_line(mistake, foreign_workdir, tmp_path):
  script, arguments, expected = LAUNCHER_MISTAKES[mistake]
  (tmp_path / "a_file").write_text("not a folder\n")
  foreign_files = {name: (foreign_workdir / name).read_bytes() for name in os.listdir(foreign_workdir)}
  result = launch(script, *(argument.format(tmp=tmp_path) for argument in arguments))
  assert_one_line(result, script, expected.format(tmp=tmp_path))
  assert not os.path.exists(tmp_path / "missing")
  # Another program's folder is never written to.
  assert {name: (foreign_workdir / name).read_bytes() for name in os.listdir(foreign_workdir)} == foreign_files


def test_jaxlm_traceback_shows_the_traceback():
  result = launch("kill_trials.py", "--overrides=train.log_every=1", traceback=True)
  assert result.returncode == 1
  assert "Traceback" in result.stderr and "jaxlm.errors.ConfigError: --overrides=train.log_every=1" in result.stderr


# A config flag's mistakes, the same in every launcher that takes a config (launch/_config_flags.py).
CONFIG_MISTAKES = {
    "missing-file": (["--config=configs/missing.py"], "config file configs/missing.py not found"),
    "unknown-variant": (["--config=configs/quickstart.py:tiny"], "unknown variant 'tiny'"),
    "misspelled-override": (["--config=configs/quickstart.py:smoke", "--config.optim.learning_rate=0.1"],
                            "--config.optim.learning_rate: the config has no key 'learning_rate' in optim; did you "
                            "mean 'lr'?"),
}
CONFIG_LAUNCHERS = {"train.py": ["--workdir={tmp}/run"], "fasttext.py": ["--output={tmp}/v.bin"], "benchmark.py": []}


@pytest.mark.parametrize("mistake", list(CONFIG_MISTAKES))
@pytest.mark.parametrize("script", list(CONFIG_LAUNCHERS))
def test_config_flag_mistakes_are_one_line(script, mistake, tmp_path):
  arguments, expected = CONFIG_MISTAKES[mistake]
  result = launch(script, *arguments, *(argument.format(tmp=tmp_path) for argument in CONFIG_LAUNCHERS[script]))
  assert_one_line(result, script, expected)
  assert not os.listdir(tmp_path)


# Mistakes found while a task is built from the user's data: UserErrors naming the file.


def test_a_classification_file_without_its_label_column(tmp_path):
  folder = write_classification(str(tmp_path / "sentences"))
  with open(os.path.join(folder, "train.csv"), "w", encoding="utf-8", newline="") as handle:
    csv.writer(handle).writerows([["id", "sentence"], ["0", "Кот спит."]])
  with pytest.raises(errors.DataError, match=r"train.csv.*label column 'acceptable'"):
    tasks.build_task(finetune_config("task=rucola", folder))


def test_a_malformed_conllu_line(tmp_path):
  folder = write_treebank(str(tmp_path / "treebank"))
  with open(os.path.join(folder, "dev.conllu"), "a", encoding="utf-8") as handle:
    handle.write("1\tкот\tкот\n")
  with pytest.raises(errors.DataError, match=r"dev.conllu line \d+: 3 tab-separated fields"):
    tasks.build_task(finetune_config("task=upos", folder))


def test_squad_answer_offsets_that_miss_the_context(tmp_path):
  document = squad_document()
  document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 5
  folder = write_squad(str(tmp_path / "squad"), document)
  with pytest.raises(errors.DataError, match=r"qa.ru.json.*question id 'q0'"):
    tasks.build_task(finetune_config("task=xquad_ru", folder))


def test_a_missing_language_model_corpus(cache_dir, tmp_path):
  with pytest.raises(errors.DataError, match=f"config data.path='{tmp_path}/nowhere' is not a folder"):
    tasks.build_task(smoke_config(str(tmp_path / "nowhere"), cache_dir))
  # The launcher's line for it (as for every mistake a task finds in its data).
  result = launch("train.py", "--config=configs/quickstart.py:smoke", f"--config.data.path={tmp_path}/nowhere",
                  f"--workdir={tmp_path}/run")
  assert_one_line(result, "train.py", f"config data.path='{tmp_path}/nowhere' is not a folder")


def test_an_init_checkpoint_that_is_not_a_workdir(tmp_path):
  folder = write_classification(str(tmp_path / "sentences"))
  config = finetune_config("task=rucola,start=checkpoint", folder, **{"init.checkpoint": str(tmp_path / "nowhere")})
  with pytest.raises(errors.MissingFileError, match=f"init.checkpoint='{tmp_path}/nowhere'.*not a jaxlm workdir"):
    tasks.build_task(config)


# A workdir that is not one, and a flag beyond what the program can do.


def test_a_foreign_config_json_is_a_workdir_error_naming_it(foreign_workdir):
  expected = f"{foreign_workdir}/config.json is not a jaxlm config: it has no 'train'/'model' section"
  with pytest.raises(errors.WorkdirError, match=expected):
    evaluate.restore_workdir(str(foreign_workdir))
  with pytest.raises(errors.WorkdirError, match=expected):
    generate.sample_workdir(str(foreign_workdir))
  with pytest.raises(errors.WorkdirError, match=f"run 'foreign': {expected}"):
    report.load_run("foreign", str(foreign_workdir))
  (foreign_workdir / "config.json").write_text("[1, 2]")
  with pytest.raises(errors.WorkdirError, match="config.json is not a jaxlm config"):
    evaluate.restore_workdir(str(foreign_workdir))


def test_max_tokens_beyond_the_bound_is_refused_before_the_checkpoint_is_read(tmp_path):
  with pytest.raises(errors.ConfigError, match=f"--max_tokens=100000000 must be between 1 and {generate.MAX_TOKENS}"):
    generate.sample_workdir(str(tmp_path / "missing"), max_tokens=10**8)
  generate.check_max_tokens(generate.MAX_TOKENS)


def test_a_workdir_that_cannot_be_written_is_one_line_before_training(tiny_corpus, cache_dir, tmp_path, monkeypatch):
  """As root (CI), permissions do not stop a write; the failing write itself is simulated."""
  from conftest import smoke_config
  from jaxlm import checkpoint
  from jaxlm.data import text_files
  from jaxlm.training import loop

  write_text = text_files.write_text

  def refuse(path, text):
    if path.endswith("config.json"):
      raise PermissionError(13, "Permission denied", path)
    write_text(path, text)

  monkeypatch.setattr(text_files, "write_text", refuse)
  with pytest.raises(checkpoint.CheckpointWriteError, match=r"cannot write .*config.json: Permission denied. Make "):
    loop.train_and_evaluate(smoke_config(tiny_corpus, cache_dir), str(tmp_path / "run"), progress=False)


@pytest.mark.parametrize("environment, expected", [
    ({}, "glibc.malloc.hugetlb=1"),  # restarted with malloc on huge pages
    ({"JAXLM_HUGE_PAGES": "0"}, "None"),  # turned off
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "glibc.malloc.arena_max=2"),  # the user's own kept
])
def test_launchers_restart_with_malloc_on_huge_pages(environment, expected):
  """launch/_huge_pages.py, the first import of every launcher that runs XLA: the same process id
  and arguments, with GLIBC_TUNABLES set (Linux only)."""
  if not sys.platform.startswith("linux"):
    pytest.skip("GLIBC_TUNABLES is glibc's (Linux)")
  code = ("import os, sys; sys.path.insert(0, 'launch'); import _huge_pages; "
          "print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])")
  base = {key: value for key, value in os.environ.items() if key not in ("GLIBC_TUNABLES", "JAXLM_HUGE_PAGES")}
  result = subprocess.run([sys.executable, "-c", code, "--flag=1"], cwd=REPO_ROOT, env={**base, **environment},
                          capture_output=True, text=True, timeout=60)
  assert result.stdout.strip() == f"{expected} ['--flag=1']", result.stderr
