"""Shared test set-up."""

import gc
import os

import pytest

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
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
  the worker died with SIGSEGV or SIGABRT at about 96% of the suite, in whichever test compiled
  next (twice on CI, twice here, once with and once without the persistent cache), and
  pytest-xdist then hung until CI's time limit. `jax.clear_caches()` releases the mappings
  (3,653 -> 536 after 1,000 small executables); a module recompiles only what it uses itself.
  """
  yield
  import jax  # pylint: disable=g-import-not-at-top

  jax.clear_caches()
  gc.collect()
