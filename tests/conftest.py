"""Shared test set-up."""

import os
import tempfile

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# Many tests compile the same small programs (the harness's step for a tiny model, in-process and in
# subprocesses): JAX's persistent compilation cache turns the repeats into cache hits. Keyed by the
# program and the JAX version, so a stale entry is never used for a different program.
# One cache folder per xdist worker: JAX writes an entry without a lock (unless eviction is on, whose
# bookkeeping is quadratic in the entries), so a worker could read an entry the other is still writing
# and crash deserializing it ("Fatal Python error: Aborted" in compilation_cache.get_executable_and_time,
# seen here). A test's subprocesses inherit their worker's folder and run while it waits.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"jaxdyn-test-compilation-cache-{os.getuid()}", _WORKER))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
