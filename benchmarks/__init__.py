"""Side-by-side speed and memory of tinynim against torch autograd and JAX: ``python -m benchmarks.run``."""
