"""Orbax checkpoints that resume themselves, and the guard against mixing runs.

Layout of a workdir:
  config.json      the full config of the run (a resume with differences named in
                   --allow_change rewrites it with its first checkpoint, so a resume
                   that fails before saving leaves it as it was)
  vocabulary.txt   the model's input vocabulary (words or pieces, one per line, in id
                   order), so a fine-tuning run tokenises exactly as this run did, and
                   evaluation scores with the ids the model was trained on
  sentencepiece.model  a SentencePiece run's (data.tokenizer or task.tokenizer "bpe")
                   model: how text becomes those pieces, for fine-tuning from this run
  data_fingerprint.txt  a sha256 prefix of the data files' content (Task.fingerprint)
  run.json         what the workdir holds: its task and the validation metric (and whether
                   lower or higher is better) that ranks its checkpoints, so a tool that
                   reopens it (a report, a fine-tuning start from ":best") builds no task
  checkpoints/N/   Orbax checkpoints: the last `keep_checkpoints` plus the best by the
                   task's validation metric (kept by Orbax's preservation policies)
  metrics.jsonl, events.out.tfevents.*   logs
Checkpoints are restored against an abstract target carrying shardings, so a run
saved on 4 devices restores on 1 (and vice versa), and on any number of processes.

Several processes (jax.distributed): the workdir must be on a file system they all see.
Process 0 writes config.json, vocabulary.txt and the fingerprint, then every process
passes a barrier; Orbax saves and restores with every process taking part (process 0
finalises a save and applies the keep policy); whether a checkpoint is readable is
agreed, so all processes fall back to the same one.
"""

import dataclasses
import json
import math
import os
import shutil
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from jaxlm import distributed, errors
from jaxlm.data import text_files

CONFIG_FILE = "config.json"
VOCABULARY_FILE = "vocabulary.txt"
SENTENCEPIECE_FILE = "sentencepiece.model"
CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run.json"


class IncompatibleWorkdirError(errors.UserError, ValueError):
  """The workdir holds a run whose model differs from the requested one."""


# What makes a run the run: the sections and keys a resume or an evaluation must share with the
# saved config. train's other keys (logging, evaluation, patience, time budget) never change what
# is trained.
IDENTITY = ("seed", "model", "task", "data", "optim", "train.batch_size", "train.seq_len", "train.steps")
# Where the files are, not what they hold (the data fingerprint covers their content): a workdir
# moved to another machine keeps its identity.
LOCATIONS = ("data.path", "data.cache_dir", "task.path")
DATA_FINGERPRINT_FILE = "data_fingerprint.txt"


def signature(config: ml_collections.ConfigDict) -> dict:
  """What must match for a checkpoint to be resumed: IDENTITY's keys, without LOCATIONS.

  Through JSON, as config.json stores it, so a tuple in the config equals the list saved.
  """
  flat = json.loads(config.to_json())
  identity = {}
  for dotted in IDENTITY:
    section, _, key = dotted.partition(".")
    if section in flat and (not key or key in flat[section]):
      identity.setdefault(section, {} if key else flat[section])
      if key:
        identity[section][key] = flat[section][key]
  for dotted in LOCATIONS:
    section, _, key = dotted.partition(".")
    if isinstance(identity.get(section), dict):
      identity[section] = {name: value for name, value in identity[section].items() if name != key}
  return identity


ABSENT = "<absent>"  # the value of a key one side of a comparison lacks


def _differences(saved: dict, requested: dict, prefix: str = "") -> list[tuple[str, object, object]]:
  """(dotted key, saved value, requested value) for each difference; a key only one side has is
  one, its missing value "<absent>"."""
  keys = sorted(set(saved) | set(requested))
  found = []
  for key in keys:
    left, right = saved.get(key, ABSENT), requested.get(key, ABSENT)
    if isinstance(left, dict) and isinstance(right, dict):
      found += _differences(left, right, f"{prefix}{key}.")
    elif left != right:
      found.append((f"{prefix}{key}", left, right))
  return found


def vocabulary_difference(saved: list[str], built: list[str]) -> str:
  first = next((index for index, (a, b) in enumerate(zip(saved, built)) if a != b), min(len(saved), len(built)))
  at = lambda words: repr(words[first]) if first < len(words) else "<end>"
  return f"{len(saved)} words saved, {len(built)} built from the data; first difference at id {first}: " \
         f"saved {at(saved)}, built {at(built)}"


def workdir_differences(workdir: str, config: ml_collections.ConfigDict, *, words=None,
                        fingerprint: str = "") -> list[tuple[str, object, object]]:
  """How `config` (and the data it reads: its vocabulary `words`, its files' `fingerprint`)
  differ from the run saved in `workdir`. Keys: config keys, "vocabulary", "data.fingerprint"."""
  found = _differences(signature(load_config(workdir)), signature(config))
  if words is not None:
    saved_words = load_words(workdir)
    if list(words) != saved_words:
      found.append(("vocabulary", "vocabulary.txt", vocabulary_difference(saved_words, list(words))))
  saved_fingerprint = load_fingerprint(workdir)
  if fingerprint and fingerprint != saved_fingerprint:
    found.append(("data.fingerprint", saved_fingerprint or f"<no {DATA_FINGERPRINT_FILE}>", fingerprint))
  return found


def _allowed(key: str, allow_change) -> bool:
  return any(key == name or key.startswith(name + ".") for name in allow_change)


def describe(differences) -> str:
  return "; ".join(f"{key}: saved {left!r}, requested {right!r}" if key != "vocabulary" else f"vocabulary: {right}"
                   for key, left, right in differences)


def check_workdir(workdir: str, config: ml_collections.ConfigDict, *, words=None, fingerprint: str = "",
                  allow_change=()) -> list[str]:
  """Refuses a workdir whose checkpoints were trained otherwise; returns the allowed changes
  (one line each, empty for a new run or an identical resume). Writes nothing.

  A resume whose identity (signature(), the vocabulary, the data files' fingerprint) differs is
  refused with every difference, unless each differing key is named in `allow_change` (a key or
  a section, e.g. "train.steps").
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise IncompatibleWorkdirError(f"--workdir {workdir} is a file, not a folder: choose a folder")
  config_path = os.path.join(workdir, CONFIG_FILE)
  if not has_checkpoints(workdir):
    if os.path.exists(config_path):
      load_config(workdir)  # another program's config.json is refused, never overwritten
    return []
  if not os.path.exists(config_path):
    raise IncompatibleWorkdirError(
        f"workdir {workdir} has checkpoints but no {CONFIG_FILE}, so their model is unknown. "
        "Choose a new --workdir.")
  differences = workdir_differences(workdir, config, words=words, fingerprint=fingerprint)
  refused = [difference for difference in differences if not _allowed(difference[0], allow_change)]
  if refused:
    names = ",".join(key for key, _, _ in refused)
    raise IncompatibleWorkdirError(
        f"workdir {workdir} holds checkpoints of a different run ({describe(refused)}). Nothing in it was "
        f"changed: choose a new --workdir, or, if the change is intended, pass --allow_change={names}.")
  return [describe([difference]) for difference in differences]


def kept_steps(workdir: str) -> list[int]:
  """The steps of the workdir's checkpoint folders, ascending (read from the folder names alone)."""
  checkpoints = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(checkpoints):
    return []
  return sorted(int(name) for name in os.listdir(checkpoints) if name.isdigit())


def has_checkpoints(workdir: str) -> bool:
  return bool(kept_steps(workdir))


def latest_step(workdir: str) -> int | None:
  """The latest kept step, or None before the first checkpoint."""
  steps = kept_steps(workdir)
  return steps[-1] if steps else None


def write_workdir(workdir: str, config: ml_collections.ConfigDict, *, run: dict, words=None,
                  fingerprint: str = "", sentencepiece_model: str = "") -> None:
  """Writes config.json, run.json (`run`: {"task", "best_metric", "best_mode"}), vocabulary.txt,
  the data fingerprint and (a SentencePiece run's) sentencepiece.model, a copy of the file
  `sentencepiece_model` (process 0, each file atomically; every process returns once they are
  written)."""
  if jax.process_index() == 0:
    try:
      os.makedirs(workdir, exist_ok=True)
      text_files.write_text(os.path.join(workdir, CONFIG_FILE), config.to_json(indent=2))
    except OSError as error:  # the first write: permissions, a read-only or full disk
      raise CheckpointWriteError(f"cannot write {os.path.join(workdir, CONFIG_FILE)}: "
                                 f"{error.strerror or error}. Make {workdir} writable, or choose another "
                                 "--workdir.") from None
    text_files.write_text(os.path.join(workdir, RUN_FILE), json.dumps(run, indent=1) + "\n")
    if words is not None:
      save_words(workdir, words)
    if fingerprint:
      text_files.write_text(os.path.join(workdir, DATA_FINGERPRINT_FILE), fingerprint + "\n")
    if sentencepiece_model:
      target = os.path.join(workdir, SENTENCEPIECE_FILE)
      shutil.copyfile(sentencepiece_model, target + ".tmp")
      os.replace(target + ".tmp", target)
  distributed.barrier("workdir prepared")  # the others then find the workdir and its files


def load_run(workdir: str) -> dict:
  """run.json: {"task", "best_metric", "best_mode"} of the run in `workdir` (see write_workdir)."""
  path = os.path.join(workdir, RUN_FILE)
  if not os.path.exists(path):
    load_config(workdir)  # a folder that is no workdir at all is named as such first
    raise errors.WorkdirError(f"{path} not found: {workdir} does not say which validation metric ranks its "
                              "checkpoints. Resume it with launch/train.py (the same command; it writes "
                              "run.json with its next checkpoint), or use a kept step (<workdir>:<step>).")
  with open(path) as handle:
    return json.load(handle)


def parse_spec(spec: str) -> tuple[str, str]:
  """A checkpoint of another run, "<workdir>[:best|:<step>]" -> (workdir, "latest" | "best" | "<step>")."""
  workdir, _, which = spec.rpartition(":")
  if workdir and (which == "best" or which.isdigit()):
    return workdir, which
  return spec, "latest"


def spec_workdir(spec: str, key: str = "init.checkpoint") -> str:
  """parse_spec's workdir, checked to be a jaxlm workdir; the error names config `key`."""
  workdir, _ = parse_spec(spec)
  if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
    raise errors.MissingFileError(f"config {key}={spec!r}: {workdir} is not a jaxlm workdir (no {CONFIG_FILE}); "
                                  "give the --workdir of a run made by launch/train.py")
  return workdir


def load_fingerprint(workdir: str) -> str:
  """The data files' fingerprint saved with the run ("" for a task whose data has none: Task.fingerprint)."""
  path = os.path.join(workdir, DATA_FINGERPRINT_FILE)
  if not os.path.exists(path):
    return ""
  with open(path) as handle:
    return handle.read().strip()


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The workdir's config.json, checked to be a jaxlm run's: a missing file is a MissingFileError,
  and a file without the sections every run saves (another program's config.json, or no JSON
  object at all) a WorkdirError naming it, not an AttributeError from deep in a restore."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise errors.MissingFileError(f"{path} not found: is {workdir} a jaxlm workdir (made by launch/train.py)?")
  try:
    with open(path) as handle:
      config = ml_collections.ConfigDict(json.load(handle))
  except (ValueError, AttributeError) as error:  # not JSON; JSON but not an object (no .items())
    raise errors.WorkdirError(f"{path} is not a jaxlm config ({error}); is {workdir} a jaxlm workdir (made by "
                              "launch/train.py)?") from error
  missing = [section for section in ("train", "model") if section not in config]
  if missing:
    raise errors.WorkdirError(f"{path} is not a jaxlm config: it has no {'/'.join(map(repr, missing))} section; "
                              f"is {workdir} a jaxlm workdir (made by launch/train.py)?")
  if "task" not in config:  # every run's config names its task (jaxlm.tasks)
    raise errors.WorkdirError(f"{path} has no 'task' section, which every run's config.json has; train "
                              f"the run again in a new --workdir")
  return config


def save_words(workdir: str, words: list[str]) -> None:
  """Writes the model's vocabulary beside the checkpoints (process 0, atomically)."""
  if jax.process_index() != 0:
    return
  text_files.write_text(os.path.join(workdir, VOCABULARY_FILE), "".join(word + "\n" for word in words))


def load_words(workdir: str) -> list[str]:
  """The vocabulary saved by save_words (every run saves its task's words)."""
  path = os.path.join(workdir, VOCABULARY_FILE)
  if not os.path.exists(path):
    raise errors.MissingFileError(f"{path} not found: {workdir} does not record its vocabulary, which every "
                                  "run's workdir has; is it a jaxlm workdir (made by launch/train.py)?")
  with open(path, encoding="utf-8") as handle:
    return handle.read().split("\n")[:-1]


def sentencepiece_path(workdir: str) -> str:
  """The run's SentencePiece model file, or "" for a word-level run."""
  path = os.path.join(workdir, SENTENCEPIECE_FILE)
  return path if os.path.isfile(path) else ""


def check_writable(directory: str) -> None:
  """Fails now, in one line, if checkpoints cannot be written to `directory`."""
  import tempfile
  try:
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_test"):
      pass
  except OSError as error:
    raise CheckpointWriteError(f"cannot write checkpoints to {directory}: {error.strerror or error}. "
                               "Make it writable, or choose another --workdir.") from None


class CheckpointWriteError(errors.UserError, OSError):
  """A checkpoint could not be written (permissions, a full disk)."""


OFF_SCHEDULE_KEY = "off_schedule"  # in a checkpoint's Orbax metrics: saved on a stop, not ranked (see save)


def metric_key(best_metric: str) -> str:
  """The name a validation metric is saved under beside each checkpoint."""
  return f"valid_{best_metric}"


def manager(workdir: str, keep: int, *, read_only: bool = False, best_metric: str = "perplexity",
            best_mode: str = "min", keep_steps=()) -> ocp.CheckpointManager:
  """Keeps the last `keep` checkpoints plus the best by validation `best_metric` (lower is
  better for best_mode="min", higher for "max"), plus those of `keep_steps` (train.keep_steps)."""
  if best_mode not in ("min", "max"):
    raise ValueError(f"best_mode={best_mode!r}: use 'min' or 'max'")
  key = metric_key(best_metric)
  worst = math.inf if best_mode == "min" else -math.inf

  def ranked(metrics) -> float:
    """The step's metric; ranked worst: an off-schedule one (see save) and a NaN/Inf one (the
    loop stops before saving one, but no caller of save can make one the best)."""
    value = float(metrics[key])
    return value if math.isfinite(value) and not metrics.get(OFF_SCHEDULE_KEY) else worst

  policy = preservation_policy.AnyPreservationPolicy([
      preservation_policy.LatestN(n=keep),
      # Orbax keeps the last n after sorting ascending (reverse=False); reverse=True puts the
      # lowest value last, which is the best for "min".
      preservation_policy.BestN(get_metric_fn=ranked, reverse=best_mode == "min", n=1),
      preservation_policy.CustomSteps(steps=[int(step) for step in keep_steps]),
  ])
  # best_fn also makes Orbax write each step's metrics beside it (read back by best_step).
  # read_only with save_interval_steps 0: Orbax would otherwise warn that it set it so itself.
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=ranked,
                                         save_interval_steps=0 if read_only else 1,
                                         best_mode=best_mode, create=not read_only,
                                         read_only=read_only, enable_async_checkpointing=False,
                                         # a save killed half-way leaves N.orbax-checkpoint-tmp-*: removed
                                         cleanup_tmp_directories=not read_only)
  directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  if not read_only:
    return ocp.CheckpointManager(directory, options=options)
  # Orbax logs a warning that a read-only manager's directory is read-only: said before any
  # message of the tool that opened it (evaluate, predict, sample), it says nothing to the user.
  from absl import logging
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return ocp.CheckpointManager(directory, options=options)
  finally:
    logging.set_verbosity(verbosity)


_WRITE_CAUSES = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied")


def _write_cause(error: BaseException) -> str | None:
  """The OS-level reason in a (wrapped) failed write, in a few words, or None."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno:
      return f"{seen.strerror}" + (f" ({seen.filename})" if seen.filename else "")
    for cause in _WRITE_CAUSES:
      if cause in str(seen):
        return cause
    seen = seen.__cause__ or seen.__context__
  return None


def save(checkpoint_manager: ocp.CheckpointManager, step: int, state, valid_metrics: dict, *,
         off_schedule: bool = False) -> None:
  """valid_metrics: {metric name: value} of this step's validation (see metric_key).

  off_schedule: a step saved because the run was stopped (SIGTERM) between train.eval_every
  steps. The run resumes from it, but it is never the best checkpoint (while another is kept):
  the uninterrupted run has no such step, and a stopped-and-resumed run must pick the same
  best checkpoint, or its scores would depend on when it was stopped.

  A write that fails for an OS reason (a full disk, permissions) is one CheckpointWriteError line.
  """
  try:
    checkpoint_manager.save(step, args=ocp.args.StandardSave(state),
                            metrics={**{metric_key(name): float(value) for name, value in valid_metrics.items()},
                                     **({OFF_SCHEDULE_KEY: 1.0} if off_schedule else {})})
    checkpoint_manager.wait_until_finished()
  except Exception as error:  # noqa: BLE001 (re-raised unchanged unless an OS cause is found)
    cause = _write_cause(error)
    if cause is None:
      raise
    raise CheckpointWriteError(
        f"could not write checkpoint step {step} to {checkpoint_manager.directory}: {cause}. The kept "
        "checkpoints before it are intact; free space (or fix permissions) and run the same command to "
        "resume.") from None


def best_step(checkpoint_manager: ocp.CheckpointManager) -> int | None:
  """The kept step with the best validation metric (the manager's best_metric and best_mode)."""
  return checkpoint_manager.best_step()


class DamagedCheckpointError(IncompatibleWorkdirError):
  """No kept checkpoint could be read."""


class MismatchedCheckpointError(IncompatibleWorkdirError):
  """A readable checkpoint whose arrays do not fit the state the config builds."""


def _ignore_abandoned_reads() -> None:
  """Keeps Orbax's abandoned reads of a damaged checkpoint quiet: after a failed restore, its
  reader coroutines are collected with their event loop closed, and Python prints each one
  ("Exception ignored in <coroutine ...>", "Event loop is closed"), up to thousands of lines
  around the one-line warning that already says which step is damaged and why."""
  if getattr(sys.unraisablehook, "ignores_abandoned_reads", False):
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    text = f"{unraisable.object!r} {unraisable.exc_value!r}"
    if "_read_array_index_and_device_put" in text or "Event loop is closed" in text or "orbax" in text:
      return
    previous(unraisable)

  hook.ignores_abandoned_reads = True
  sys.unraisablehook = hook


def _read_failure(error: BaseException) -> str:
  """A failed read's cause in one line (_one_line), with Orbax's abandoned reads kept quiet."""
  _ignore_abandoned_reads()
  return _one_line(error)


def _one_line(error: BaseException) -> str:
  """The first line of the innermost error that names a file, else of `error` (Orbax and
  TensorStore wrap the cause in several layers and long specs)."""
  chain, seen = [], error
  while seen is not None and seen not in chain:
    chain.append(seen)
    seen = seen.__cause__ or seen.__context__
  for candidate in reversed(chain):
    text = str(candidate).strip().splitlines()[0] if str(candidate).strip() else ""
    if "file" in text.lower() or "/" in text:
      return text[:300]
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _missing_file(directory: str) -> str | None:
  for name in ("_CHECKPOINT_METADATA", os.path.join("default", "_METADATA"), os.path.join("default", "manifest.ocdbt")):
    if not os.path.exists(os.path.join(directory, name)):
      return f"{os.path.join(directory, name)} is missing"
  return None


def _path_names(path) -> tuple[str, ...]:
  """A pytree path as plain names: a dataclass field, a dict key and a list index alike, so the
  state's tree and Orbax's saved tree (dicts and lists) name a leaf the same way."""
  names = []
  for key in path:
    for attribute in ("name", "key", "idx"):
      if hasattr(key, attribute):
        names.append(str(getattr(key, attribute)))
        break
    else:
      names.append(str(key))
  return tuple(names)


def _arrays(tree) -> dict[tuple[str, ...], tuple]:
  """{leaf path: (shape, dtype name)} of a tree of arrays, ShapeDtypeStructs or Orbax metadata."""
  return {_path_names(path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0] if hasattr(leaf, "shape")}


def saved_tree_metadata(directory: str) -> dict:
  """The saved state's tree of Orbax array metadata (shapes, dtypes; no values read), by its
  fields' names ({"params": ..., "opt_state": ..., ...})."""
  from etils import epath
  metadata = ocp.StandardCheckpointHandler().metadata(epath.Path(directory) / "default")
  return metadata.tree if hasattr(metadata, "tree") else metadata


def mismatched_fields(saved_tree: dict, abstract_state) -> dict[str, str]:
  """{state field: its first difference} where the saved arrays' names, shapes or dtypes differ
  from the state this config builds (empty: the checkpoint fits)."""
  found = {}
  for field in dataclasses.fields(abstract_state):
    wanted, saved = _arrays(getattr(abstract_state, field.name)), _arrays(saved_tree.get(field.name, {}))
    for path in sorted(set(wanted) | set(saved)):
      if wanted.get(path) != saved.get(path):
        shown = lambda entry: "absent" if entry is None else f"{entry[0]} {entry[1]}"
        found[field.name] = (f"{'/'.join((field.name,) + path)}: saved {shown(saved.get(path))}, "
                             f"built {shown(wanted.get(path))}")
        break
  return found


_FIELD_NAMES = {"params": "parameters", "opt_state": "optimiser state", "frozen": "fixed tables",
                "carry": "carried state"}


def _restore_fitting(checkpoint_manager, step: int, abstract_state, saved_tree: dict, restartable: tuple):
  """Restores the fields of `abstract_state` that fit checkpoint `step`; a field in `restartable`
  that does not fit is read as saved (replicated) and returned as None, for the caller to start
  anew. Returns (state, {restarted field: its first difference})."""
  mismatched = mismatched_fields(saved_tree, abstract_state)
  refused = {name: what for name, what in mismatched.items() if name not in restartable}
  if refused:
    what = " and ".join(_FIELD_NAMES.get(name, name) for name in refused)
    advice = ("a change to the model's shapes cannot be resumed; choose a new --workdir (a fine-tuning run can "
              "start from this one with --config.init.checkpoint)" if "params" in refused else
              "the optimiser state is started anew only for a change named in --allow_change (an optim key); "
              "run the config this workdir was trained with, or choose a new --workdir")
    raise MismatchedCheckpointError(
        f"checkpoint step {step} in {checkpoint_manager.directory} is readable, but its {what} do not fit "
        f"the model and optimiser this config builds ({'; '.join(refused.values())}). Nothing in the workdir "
        f"was changed: {advice}.")
  if not mismatched:
    return restore(checkpoint_manager, step, abstract_state), {}
  replicated = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(jax.devices()), ("saved",)),
                                          jax.sharding.PartitionSpec())
  target = {}
  for field in dataclasses.fields(abstract_state):
    if field.name in mismatched:
      target[field.name] = jax.tree.map(
          lambda leaf: jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=replicated),
          saved_tree[field.name], is_leaf=lambda leaf: hasattr(leaf, "shape"))
    else:
      target[field.name] = getattr(abstract_state, field.name)
  restored = restore(checkpoint_manager, step, target)
  state = abstract_state.replace(**{name: None if name in mismatched else restored[name]
                                    for name in target})
  return state, mismatched


def _first_readable(checkpoint_manager: ocp.CheckpointManager, steps, read, *, source: str = "",
                    fallback: str = "restoring", on_damaged=None, none_read):
  """(step, read(step, directory)) of the first of `steps` whose files read.

  Each unreadable step on the way is one warning line on stderr (prefixed by `source`, what
  the user wrote, e.g. "config init.checkpoint=..."), then passed to on_damaged(step). A
  MismatchedCheckpointError (readable, but not what the config builds) is never damage: it
  propagates. When none reads: DamagedCheckpointError(none_read(causes)). One process's failed
  read makes a step damaged for all: they must go on from one state.
  """
  prefix = f"{source}: " if source else ""
  causes = []
  for index, step in enumerate(steps):
    directory = os.path.join(str(checkpoint_manager.directory), str(step))
    result, cause = None, _missing_file(directory)
    if cause is None:
      try:
        result = read(step, directory)
      except MismatchedCheckpointError:
        raise
      except Exception as error:  # noqa: BLE001 (any failure to read: a truncated file, a bad manifest)
        cause = _read_failure(error)
    if not distributed.agree_any([cause is not None])[0]:
      return step, result
    cause = cause or f"unreadable on another of the {jax.process_count()} processes"
    causes.append(f"step {step}: {cause}")
    following = f"; {fallback} step {steps[index + 1]} instead" if index + 1 < len(steps) else ""
    print(f"warning: {prefix}checkpoint step {step} in {checkpoint_manager.directory} is unreadable "
          f"({cause}){following}", file=sys.stderr)
    if on_damaged is not None:
      on_damaged(step)
  raise DamagedCheckpointError(none_read("; ".join(causes)))


def _fitting_reader(checkpoint_manager, abstract_state, restartable):
  """read(step, directory) -> (state, restarted): the saved tree's shapes first (no values
  read), so a readable checkpoint that does not fit is refused before anything is moved."""
  def read(step, directory):
    return _restore_fitting(checkpoint_manager, step, abstract_state, saved_tree_metadata(directory), restartable)
  return read


def restore_step(checkpoint_manager: ocp.CheckpointManager, step: int, abstract_state, *, restartable=()):
  """(state, restarted) of checkpoint `step` alone (a step the user named: no other will do),
  with restore_readable's rule for a readable checkpoint that does not fit; a damaged one is
  an error naming it."""
  _, (state, restarted) = _first_readable(
      checkpoint_manager, [step], _fitting_reader(checkpoint_manager, abstract_state, restartable),
      none_read=lambda causes: (f"checkpoint {causes} in {checkpoint_manager.directory} cannot be read; name "
                                "another kept step, or leave out --step/--best for the latest readable one"))
  return state, restarted


def restore_readable(checkpoint_manager: ocp.CheckpointManager, abstract_state, *, on_damaged=None,
                     restartable=()):
  """(step, state, restarted) of the latest kept checkpoint that reads; each damaged one on the
  way is reported in one line on stderr (and passed to on_damaged(step), e.g. to move it aside).

  Damaged means unreadable files, never a readable checkpoint that does not fit the state this
  config builds: that is an IncompatibleWorkdirError raised before anything is moved, unless
  only fields named in `restartable` (a dataclass state's field names, e.g. "opt_state") differ.
  Those are then left None in the returned state, with {field: first difference} in `restarted`,
  for the caller to start anew. Only when no kept checkpoint reads is it a DamagedCheckpointError
  naming each one's cause.
  """
  step, (state, restarted) = _first_readable(
      checkpoint_manager, sorted(checkpoint_manager.all_steps(), reverse=True),
      _fitting_reader(checkpoint_manager, abstract_state, restartable), on_damaged=on_damaged,
      none_read=lambda causes: (f"no kept checkpoint in {checkpoint_manager.directory} could be restored "
                                f"({causes}). The files are damaged: choose a new --workdir."))
  return step, state, restarted


def restore_first_readable(checkpoint_manager: ocp.CheckpointManager, steps, *, source: str):
  """(step, Orbax's raw tree) of the first of `steps` whose files read (no target: the saved
  structure, e.g. a pre-trained run's, restored without rebuilding its optimiser). Unreadable
  steps are reported and passed over as restore_readable does; the errors name `source`."""
  return _first_readable(
      checkpoint_manager, list(steps),
      lambda step, directory: checkpoint_manager.restore(step, args=ocp.args.StandardRestore()),
      source=source, fallback="using",
      none_read=lambda causes: (f"{source}: no checkpoint of {', '.join(str(step) for step in steps)} in "
                                f"{checkpoint_manager.directory} could be read ({causes}); name another kept "
                                "step (<workdir>:<step>) or another workdir"))


def restore(checkpoint_manager: ocp.CheckpointManager, step: int, abstract_state):
  """abstract_state: jax.ShapeDtypeStruct leaves with shardings (see experiments.abstract_state)."""
  try:
    return checkpoint_manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except Exception as error:  # noqa: BLE001 (TensorStore read errors arrive as plain Exception)
    raise IncompatibleWorkdirError(
        f"checkpoint {checkpoint_manager.directory}/{step} cannot be read into the model and optimiser built "
        f"from the config: {_one_line(error)}") from error
