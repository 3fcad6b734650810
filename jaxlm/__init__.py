"""jaxlm: language models on little data and little compute, in JAX/Flax."""
