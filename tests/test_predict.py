"""launch/predict.py: where predictions may be written, and on which data files, with one tiny
classification run shared by the module (trained in seconds)."""

import csv
import os
import re
import subprocess
import sys
import tempfile

import pytest

from conftest import REPO_ROOT, snapshot
from jaxlm import errors
from jaxlm.training import evaluate, loop, predict
from task_fixtures import finetune_config, write_classification


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(workdir, data folder) of a 4-step RuCoLA-shaped classifier. Tests that edit the data put it back."""
  folder = write_classification(str(tmp_path_factory.mktemp("sentences")))
  workdir = str(tmp_path_factory.mktemp("runs") / "rucola")
  loop.train_and_evaluate(finetune_config("task=rucola,body=transformer", folder, **{"train.steps": 4}), workdir,
                           progress=False)
  return workdir, folder


@pytest.fixture
def no_restore(monkeypatch):
  """Fails the test if a checkpoint is restored: a refusal must come before the model is built."""
  def restore(*args, **kwargs):
    raise AssertionError("the model was built and restored before the refusal")
  monkeypatch.setattr(evaluate, "restore_workdir", restore)


def launcher_flags():
  """The flags launch/predict.py defines (its own and the shared workdir ones)."""
  names = set()
  for name in ("predict.py", "_workdir_flags.py"):
    with open(os.path.join(REPO_ROOT, "launch", name), encoding="utf-8") as handle:
      names.update(re.findall(r"flags\.DEFINE_\w+\(\s*\"(\w+)\"", handle.read()))
  return names


def test_an_output_inside_the_workdir_is_refused_and_the_run_left_as_it_was(run, tmp_path, no_restore):
  workdir, _ = run
  before = snapshot(workdir)
  link = tmp_path / "link"
  os.symlink(workdir, link)  # the workdir reached through a symbolic link is still the workdir
  for output in ["config.json", "vocabulary.txt", "data_fingerprint.txt", "metrics.jsonl",
                 os.path.join("checkpoints", "predictions.csv"), "predictions.csv", ""]:
    with pytest.raises(errors.WorkdirError, match="is inside the workdir"):
      predict.predict_workdir(workdir, os.path.join(workdir, output), overwrite=True)
  with pytest.raises(errors.WorkdirError, match="is inside the workdir"):
    predict.predict_workdir(workdir, str(link / "config.json"), overwrite=True)
  assert snapshot(workdir) == before


def test_the_launcher_refuses_in_one_line_and_config_json_stays_byte_identical(run):
  workdir, _ = run
  config = os.path.join(workdir, "config.json")
  with open(config, "rb") as handle:
    before = handle.read()
  result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "launch", "predict.py"), f"--workdir={workdir}",
                           f"--output={config}", "--overwrite"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"launch/predict.py: --output={config} is inside the workdir")
  with open(config, "rb") as handle:
    assert handle.read() == before


def test_a_missing_or_unwritable_output_folder_is_refused_before_the_model_runs(run, tmp_path, monkeypatch,
                                                                               no_restore):
  workdir, _ = run
  with pytest.raises(errors.MissingFileError, match="its folder .*missing does not exist.*mkdir -p"):
    predict.predict_workdir(workdir, str(tmp_path / "missing" / "out.csv"))
  (tmp_path / "a_file").write_text("")
  with pytest.raises(errors.WorkdirError, match="a_file is not a folder"):
    predict.predict_workdir(workdir, str(tmp_path / "a_file" / "out.csv"))
  with pytest.raises(errors.WorkdirError, match="is a folder.*name a file"):
    predict.predict_workdir(workdir, str(tmp_path))
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  if os.access(locked, os.W_OK):  # root writes anywhere: fail the write there as it fails for a user
    original = tempfile.TemporaryFile

    def temporary_file(*args, **kwargs):
      if kwargs.get("dir") == str(locked):
        raise PermissionError(13, "Permission denied")
      return original(*args, **kwargs)
    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
  with pytest.raises(errors.WorkdirError, match="cannot write in its folder .*locked \\(Permission denied\\)"):
    predict.predict_workdir(workdir, str(locked / "out.csv"))
  assert os.listdir(locked) == []
  with pytest.raises(errors.MissingFileError, match="--input=.*nothing.csv is not a file"):
    predict.predict_workdir(workdir, str(tmp_path / "out.csv"), input_path=str(tmp_path / "nothing.csv"))
  with pytest.raises(errors.MissingFileError, match="has no config.json"):
    predict.predict_workdir(str(tmp_path / "no_run"), str(tmp_path / "out.csv"))


def test_an_existing_output_is_replaced_only_with_overwrite(run, tmp_path):
  workdir, _ = run
  output = tmp_path / "test.csv"
  output.write_text("kept\n")
  with pytest.raises(errors.WorkdirError, match="test.csv exists; nothing was written: pass --overwrite"):
    predict.predict_workdir(workdir, str(output))
  assert output.read_bytes() == b"kept\n"
  result = predict.predict_workdir(workdir, str(output), overwrite=True)
  rows = list(csv.reader(open(output, encoding="utf-8")))
  assert rows[0] == ["id", "acceptable"] and len(rows) == 11 and result["examples"] == 10
  assert sorted(os.listdir(tmp_path)) == ["test.csv"]  # no temporary file left beside it


def test_a_new_file_is_predicted_although_the_config_test_file_was_edited(run, tmp_path):
  workdir, folder = run
  new_file = tmp_path / "new.csv"
  new_file.write_text("id,sentence\na,Кот спит да.\nb,Лес идёт нет.\n", encoding="utf-8")
  predict.predict_workdir(workdir, str(tmp_path / "before.csv"), input_path=str(new_file))
  test_file = os.path.join(folder, "test.csv")
  with open(test_file, encoding="utf-8") as handle:
    text = handle.read()
  try:
    with open(test_file, "a", encoding="utf-8") as handle:  # a new test row with words never seen
      handle.write("10,Зебра поёт громко.\n")
    # A new file needs only the checkpoint and the saved vocabulary: predicted without a flag,
    # exactly as before the edit.
    result = predict.predict_workdir(workdir, str(tmp_path / "after.csv"), input_path=str(new_file))
    assert result["examples"] == 2 and result["split"] == "input"
    assert (tmp_path / "after.csv").read_bytes() == (tmp_path / "before.csv").read_bytes()
    # The config's own split is guarded by the fingerprint, and the advice names a flag predict.py has.
    with pytest.raises(evaluate.DataChangedError, match="Pass --allow_data_change") as refusal:
      predict.predict_workdir(workdir, str(tmp_path / "test.csv"), split="test")
    assert set(re.findall(r"--(\w+)", str(refusal.value))) <= launcher_flags()
    # With the flag, the edited test file predicts every row, with the saved vocabulary.
    result = predict.predict_workdir(workdir, str(tmp_path / "test.csv"), split="test", allow_data_change=True)
    assert result["examples"] == 11
  finally:
    with open(test_file, "w", encoding="utf-8") as handle:
      handle.write(text)
