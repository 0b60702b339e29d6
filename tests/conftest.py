"""Shared test set-up."""

import os
import tempfile

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# Many tests compile the same small programs (the harness's step for a tiny model, in-process and in
# subprocesses): JAX's persistent compilation cache turns the repeats into cache hits. Keyed by the
# program and the JAX version, so a stale entry is never used for a different program.
# One cache folder per xdist worker (`pytest_configure` below): JAX writes an entry without a lock
# (unless eviction is on, whose bookkeeping re-reads the whole folder on every write), so a worker
# could read an entry the other was still writing and crash deserializing it ("Fatal Python error:
# Aborted" in compilation_cache.get_executable_and_time, seen here). A test's subprocesses inherit
# their worker's folder.
_CACHE_ROOT = os.path.join(tempfile.gettempdir(), f"jaxdyn-test-compilation-cache-{os.getuid()}")
# (xdist's workers inherit the controller's environment, so a folder under _CACHE_ROOT is ours.)
_CACHE_SET_BY_USER = not os.environ.get("JAX_COMPILATION_CACHE_DIR", _CACHE_ROOT).startswith(_CACHE_ROOT)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_CACHE_ROOT, "main"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_configure(config):
  worker = getattr(config, "workerinput", {}).get("workerid")  # set in pytest-xdist's workers only
  if worker and not _CACHE_SET_BY_USER:
    import jax  # noqa: PLC0415  (after the environment above; nothing has compiled yet)

    path = os.path.join(_CACHE_ROOT, worker)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # for the tests' subprocesses
    jax.config.update("jax_compilation_cache_dir", path)
