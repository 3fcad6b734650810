"""Test set-up: 4 simulated CPU devices and fast compiles.

XLA_FLAGS must be set before jax is first imported, so it is set here, at the
top of the first module pytest loads.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Roughly halves the compile time of a first step on tiny models; tests only.
jax.config.update("jax_disable_most_optimizations", True)
