"""Several processes, one run: jax.distributed set-up and what the processes must agree on.

JAX's multi-controller runtime runs one Python process per host (or per group of
devices); every process runs the same program, holds its own rows of each global
batch and takes part in every collective. So anything one process decides alone
(stop now: a clock, a signal) must be agreed by all of them, or the others wait
forever in the next step's all-reduce; and files (data caches, logs) are written by
one process, with a barrier before the others read them.

On one process every helper here is free: no collective, no barrier.
"""

import os
from typing import Callable, Sequence, TypeVar

import jax
import numpy as np

from jaxlm import errors

Result = TypeVar("Result")


def requested_arguments(coordinator_address: str | None = None, num_processes: int | None = None,
                        process_id: int | None = None, *, multihost: bool = False,
                        environ=os.environ) -> dict | None:
  """The jax.distributed.initialize arguments asked for, or None for a one-process run.

  Explicit values (the launchers' --coordinator_address, --num_processes, --process_id)
  come first; any left out are detected by jax.distributed (SLURM, Open MPI, TPU pods,
  Kubernetes). `multihost` asks for detection alone. Without either, a SLURM job step of
  several tasks (srun's SLURM_STEP_NUM_TASKS > 1) is detected too: its tasks would
  otherwise each train a copy of the run into one workdir. (The batch script itself is
  a one-task step: run the launcher under srun.)
  """
  if coordinator_address or num_processes is not None or process_id is not None:
    if not coordinator_address and (num_processes is not None or process_id is not None):
      raise errors.ConfigError("--num_processes/--process_id need --coordinator_address=HOST:PORT (process 0's "
                       "address and a free port), or drop them all to detect the cluster (SLURM, Open MPI)")
    return {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
  if multihost or int(environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
    return {}
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, multihost: bool = False) -> bool:
  """Starts jax.distributed when requested (requested_arguments); True if it did.

  Call before anything touches a JAX device. CPU collectives across processes use gloo
  (XLA's CPU client has no other cross-process implementation); the setting only
  concerns the CPU client, so GPU and TPU runs are unaffected.
  """
  arguments = requested_arguments(coordinator_address, num_processes, process_id, multihost=multihost)
  if arguments is None:
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**arguments)
  except ValueError as error:  # nothing given and no cluster detected: jax names only its argument
    raise errors.ConfigError(f"jax.distributed.initialize: {error} No cluster (SLURM, Open MPI, TPU) was detected: "
                     "give --coordinator_address=HOST:PORT --num_processes=N --process_id=I on every "
                     "process.") from None
  return True


def is_primary() -> bool:
  """Process 0: the one that writes logs, metrics and caches."""
  return jax.process_index() == 0


def agree_max(values: Sequence[int]) -> list[int]:
  """Each value's maximum over the processes (one small all-gather of int32s).

  Every process must call it at the same point of the program, with as many values.
  """
  if jax.process_count() == 1:
    return [int(value) for value in values]
  from jax.experimental import multihost_utils
  gathered = multihost_utils.process_allgather(np.asarray(values, np.int32))  # [processes, values]
  return [int(value) for value in np.max(np.asarray(gathered), axis=0)]


def agree_any(flags: Sequence[bool]) -> list[bool]:
  """Each flag, True on every process where it is True on at least one (see agree_max)."""
  return [value > 0 for value in agree_max([int(bool(flag)) for flag in flags])]


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (names must match; a check against bugs)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def primary_first(name: str, build: Callable[[], Result]) -> Result:
  """build() on process 0, then, after a barrier, on the others.

  For work that writes a cache on the way (tokenised corpora, vocabularies, TFDS
  datasets, SentencePiece models): process 0 writes it once and the others read it,
  provided the cache is on a file system they share. Process 0 reaches the barrier even
  when build() fails, so the others fail on their own (usually with the same error)
  rather than wait for it.
  """
  if jax.process_count() == 1:
    return build()
  if not is_primary():
    barrier(name)
    return build()
  try:
    return build()
  finally:
    barrier(name)


def to_host(array) -> np.ndarray:
  """A global array's whole value on every process (an all-gather when other processes hold rows)."""
  if getattr(array, "is_fully_addressable", True):
    return np.asarray(jax.device_get(array))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))


# What a collective's error says when the process at its other end is gone (killed, crashed,
# its machine lost): gloo's socket errors on CPU, the coordination service's heartbeat on any.
_LOST_PROCESS_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
                       "heartbeat timeout", "tasks are unhealthy")


def lost_process(error: BaseException) -> bool:
  """True for an error of a collective that failed because another process of the run is gone."""
  return jax.process_count() > 1 and any(sign in str(error) for sign in _LOST_PROCESS_SIGNS)


def lost_process_message(lost: int | None, cause: str, resume_step: int | None) -> str:
  """One line for a run whose other process stopped answering: which, why, and what to do.

  lost: that process's index, None when this process cannot tell which it was."""
  count, own = jax.process_count(), jax.process_index()
  if lost is None and count == 2:
    lost = 1 - own
  other = f"process {lost}" if lost is not None else f"another of the {count} processes"
  resume = (f"they resume from checkpoint {resume_step}" if resume_step is not None
            else "no checkpoint was saved yet, so they start again")
  return (f"process {own} of {count}: {other} stopped answering ({cause}); it was killed or crashed (see its "
          f"own output). Run every process's command again: {resume}.")


def lost_process_cause(error: BaseException) -> str:
  """The words of a collective's error that say its other end is gone."""
  return next((sign for sign in _LOST_PROCESS_SIGNS if sign in str(error)), "no answer")


def exit_at_once(status: int) -> None:
  """Ends this process now, skipping jax.distributed's shutdown, whose barrier would wait for a
  lost process until the heartbeat times out (over a minute) and then abort with a C++ dump."""
  import sys
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


class PeerWatch:
  """Notices, within `timeout` seconds, that another process of the run is gone, and calls
  on_lost(process index) from a background thread.

  A process killed while the others wait in a collective does not always break their sockets:
  they can wait until jax's coordination service misses its heartbeats (100 s) and aborts them
  with a C++ dump. Here each process increments a counter in jax.distributed's key-value store
  every `interval` seconds, and reads the others'; one that has not moved for `timeout`
  seconds is gone (a live process moves it whatever its main thread does: the store is
  served by the coordinator, and the thread needs the GIL only briefly). A no-op for one
  process, or where this jax has no such store.
  """

  def __init__(self, on_lost: Callable[[int], None], *, interval: float = 2.0, timeout: float = 20.0):
    self.on_lost, self.interval, self.timeout = on_lost, interval, timeout
    self.stopped = None

  def __enter__(self):
    import threading
    client = _key_value_client()
    if jax.process_count() > 1 and client is not None:
      self.stopped = threading.Event()
      threading.Thread(target=self._watch, args=(client,), name="jaxlm-peer-watch", daemon=True).start()
    return self

  def __exit__(self, *exc):
    if self.stopped is not None:
      self.stopped.set()

  def _watch(self, client) -> None:
    import time
    own, others = jax.process_index(), [index for index in range(jax.process_count()) if index != jax.process_index()]
    seen = {index: (None, time.monotonic()) for index in others}  # last value read, and when it last changed
    beat = 0
    while not self.stopped.wait(self.interval):
      beat += 1
      try:
        client.key_value_set(f"jaxlm/alive/{own}", str(beat), allow_overwrite=True)
      except Exception:  # noqa: BLE001 (the coordinator itself is gone: jax's own errors follow)
        return
      now = time.monotonic()
      for index in others:
        try:
          value = client.key_value_try_get(f"jaxlm/alive/{index}")
        except Exception:  # noqa: BLE001 (not written yet: it has not started watching)
          value = None
        if value != seen[index][0]:
          seen[index] = (value, now)
        elif value is not None and now - seen[index][1] > self.timeout:
          self.on_lost(index)
          return


def _key_value_client():
  """jax.distributed's client (its key-value store), or None (one process; a jax without it)."""
  try:
    from jax._src import distributed as jax_distributed
    return jax_distributed.global_state.client
  except (ImportError, AttributeError):
    return None
