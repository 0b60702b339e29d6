"""Shared test set-up."""

import os
import tempfile

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# Many tests compile the same small programs (the harness's step for a tiny model, in-process and in
# subprocesses): JAX's persistent compilation cache turns the repeats into cache hits. Keyed by the
# program and the JAX version, so a stale entry is never used for a different program.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"jaxdyn-test-compilation-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
