"""Shared test set-up."""

import gc
import os

import pytest

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine. Every entry a
# flag: XLA stops reading XLA_FLAGS at the first token that is not one (an earlier
# "intra_op_parallelism_threads=1" here silently disabled every flag appended after it, such as the
# memory notebook's `jaxdyn.memory.CPU_REMAT_XLA_FLAG`).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
# No persistent compilation cache: with a shared folder a worker aborted reading an entry that the
# other was still writing (JAX writes entries without a lock), and it buys little once the in-memory
# caches are dropped per module (below). A user who wants it sets JAX_COMPILATION_CACHE_DIR
# themselves; the tests' subprocesses inherit it.


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
