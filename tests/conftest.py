"""Shared test set-up."""

import gc
import os
import tempfile

import pytest

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine. Every entry a
# flag: XLA stops reading XLA_FLAGS at the first token that is not one (an earlier
# "intra_op_parallelism_threads=1" here silently disabled every flag appended after it, such as the
# memory notebook's `jaxdyn.memory.CPU_REMAT_XLA_FLAG`).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
# Many tests compile the same small programs (the harness's step for a tiny model, in-process, in
# subprocesses and again after the per-module clear below): JAX's persistent compilation cache turns
# the repeats into cache hits (CI took about 900 s with it and 2,064 s without). Keyed by the program
# and the JAX version, so a stale entry is never used for a different program. One folder per xdist
# worker (`pytest_configure`): JAX writes an entry without a lock, so a worker could read an entry the
# other was still writing and abort. (The cache was once switched off for segfaults inside its write
# late in the run; those were the memory-mapping limit described below, which the clears now keep
# far away.) A test's subprocesses inherit their worker's folder.
_CACHE_ROOT = os.path.join(tempfile.gettempdir(), f"jaxdyn-test-compilation-cache-{os.getuid()}")
# (xdist's workers inherit the controller's environment, so a folder under _CACHE_ROOT is ours.)
_CACHE_SET_BY_USER = not os.environ.get("JAX_COMPILATION_CACHE_DIR", _CACHE_ROOT).startswith(_CACHE_ROOT)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_CACHE_ROOT, "main"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_configure(config):
  worker = getattr(config, "workerinput", {}).get("workerid")  # set in pytest-xdist's workers only
  if worker and not _CACHE_SET_BY_USER:
    import jax  # pylint: disable=g-import-not-at-top  (after the environment above; nothing compiled yet)

    path = os.path.join(_CACHE_ROOT, worker)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # for the tests' subprocesses
    jax.config.update("jax_compilation_cache_dir", path)


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_executables():
  """Frees every compiled executable when a worker leaves a test module.

  XLA:CPU maps each live executable's code and data as about three separate memory mappings, and
  JAX's caches keep an executable alive as long as its function is (module-level `jax.jit`s, NNX
  graphs held by fixtures). One worker running most of the suite accumulates more than 20,000 of
  them, passes Linux's `vm.max_map_count` (65,530), and the next compilation fails inside LLVM:
  a worker died with SIGSEGV or SIGABRT at about 96% of the suite, in whichever test compiled next
  (on CI, and both workers of one run here without the persistent cache: the mapping count, not the
  cache, was the cause), and pytest-xdist then hung until CI's time limit. `jax.clear_caches()` releases the mappings
  (3,653 -> 536 after 1,000 small executables); a module recompiles only what it uses itself.
  """
  yield
  _clear()


_MAPS = "/proc/self/maps"
_MAPS_LIMIT = 30_000  # half of the default vm.max_map_count


def pytest_runtest_teardown(item, nextitem):  # noqa: ARG001
  """Also clears inside a module that compiles a great deal (the input-policy module peaked at 19,293
  mappings in one worker): whenever the process holds more than 30,000 mappings."""
  if os.path.exists(_MAPS):
    with open(_MAPS, "rb") as f:
      if sum(1 for _ in f) > _MAPS_LIMIT:
        _clear()


def _clear():
  import jax  # pylint: disable=g-import-not-at-top

  jax.clear_caches()
  gc.collect()
