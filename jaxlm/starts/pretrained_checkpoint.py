"""Fine-tuning starts: the input layer and body of a pre-trained run's checkpoint.

config.init.checkpoint = "<workdir>", "<workdir>:best" or "<workdir>:<step>" names a
jaxlm workdir (a causal or masked LM, or any task) and which of its kept checkpoints
to start from (default: the latest). Only parameters are taken, never the optimiser
state or carry: the "input_layer" and "body" subtrees, by name. The task's head is new.
The vocabulary comes with the checkpoint (vocabulary.txt in the workdir, read by
jaxlm.tasks.text_inputs), so the new model's input table has the same rows.

The checkpoint is restored without a target (Orbax's raw tree), so the pre-training
run's optimiser and head need not be rebuilt; every name and shape of the two
subtrees must then equal the new model's, or the error lists each that differs.
One difference is by design: an embedding bag's vocabulary may have grown by the
task's new words (jaxlm.tasks.text_inputs appends them after the pre-trained words), so
its table [pre-trained words + new words + n-gram buckets, width] takes the pre-trained
word rows and buckets and keeps fresh rows for the new words.
"""


import jax
import numpy as np

from jaxlm import checkpoint, errors

ENCODER_SCOPES = ("input_layer", "body")


def _steps(manager, spec: str) -> list[int]:
  """The kept steps to try, in order: the named one alone; the best, then the others from the
  latest; the latest, then the earlier ones (a damaged one is passed over with a warning, as
  training's own restore does)."""
  _, which = checkpoint.parse_spec(spec)
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    raise errors.MissingFileError(f"config init.checkpoint={spec!r}: the workdir has no checkpoint yet")
  if which == "latest":
    return steps
  if which == "best":
    best = manager.best_step()
    return [best] + [step for step in steps if step != best]
  if int(which) not in steps:
    raise errors.ConfigError(f"config init.checkpoint={spec!r}: step {which} is not kept; kept steps: "
                             f"{sorted(steps)}")
  return [int(which)]


def restore_encoder(spec: str) -> dict:
  """{scope: numpy parameter tree} of the checkpoint's input layer and body."""
  workdir = checkpoint.spec_workdir(spec)
  saved = checkpoint.load_config(workdir)
  # Only ":best" needs the run's best metric, which the workdir records (run.json): no task is built.
  best = checkpoint.load_run(workdir) if checkpoint.parse_spec(spec)[1] == "best" else {}
  manager = checkpoint.manager(workdir, saved.train.keep_checkpoints, read_only=True,
                               best_metric=best.get("best_metric", "loss"), best_mode=best.get("best_mode", "min"))
  try:
    _, tree = checkpoint.restore_first_readable(manager, _steps(manager, spec),
                                                source=f"config init.checkpoint={spec!r}")
  finally:
    manager.close()
  return {scope: jax.tree.map(np.asarray, tree["params"][scope]) for scope in ENCODER_SCOPES}


def _shapes(tree, prefix: str) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {prefix + "/".join(str(getattr(key, "key", key)) for key in path): tuple(np.shape(leaf))
          for path, leaf in flat}


def _grow_bag_table(restored: dict, params: dict, spec: str) -> None:
  """Makes a pre-trained bag's table the new, larger vocabulary's: [saved words; the fresh
  state's rows for the new words; saved n-gram buckets]. Only a bag's vocabulary grows
  (jaxlm.tasks.text_inputs), always after the saved words, keeping the bucket count."""
  saved_table, fresh_table = restored["input_layer"].get("table"), params["input_layer"].get("table")
  if saved_table is None or fresh_table is None or saved_table.shape[0] >= fresh_table.shape[0]:
    return
  if saved_table.shape[1] != fresh_table.shape[1]:
    return  # another width: the shape check reports it
  saved_words = checkpoint.load_words(checkpoint.parse_spec(spec)[0])
  extra = fresh_table.shape[0] - saved_table.shape[0]
  fresh = np.asarray(jax.device_get(fresh_table))
  vocab = len(saved_words)
  restored["input_layer"] = dict(restored["input_layer"])
  restored["input_layer"]["table"] = np.concatenate(
      [saved_table[:vocab], fresh[vocab:vocab + extra], saved_table[vocab:]], axis=0)


def install(state, spec: str):
  """The state with its input layer and body parameters replaced by the checkpoint's.

  Shardings and dtypes stay the fresh state's; a name or shape that differs is an error.
  """
  restored = restore_encoder(spec)
  params = dict(state.params)
  _grow_bag_table(restored, params, spec)
  differences = []
  for scope in ENCODER_SCOPES:
    wanted, found = _shapes(params[scope], f"{scope}/"), _shapes(restored[scope], f"{scope}/")
    for name in sorted(set(wanted) | set(found)):
      if wanted.get(name) != found.get(name):
        differences.append(f"{name}: checkpoint {found.get(name, 'absent')}, config {wanted.get(name, 'absent')}")
  if differences:
    raise errors.ConfigError(f"config init.checkpoint={spec!r} does not fit the model built from the config "
                     f"(model.width, model.input, model.family and its fields must match the pre-training "
                     f"run's): " + "; ".join(differences))
  for scope in ENCODER_SCOPES:
    params[scope] = jax.tree.map(lambda fresh, saved: jax.device_put(saved.astype(fresh.dtype), fresh.sharding),
                                 params[scope], restored[scope])
  return state.replace(params=params)
