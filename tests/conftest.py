"""Shared test set-up."""

import os

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# No persistent compilation cache. With one (a folder per xdist worker), a worker segfaulted three
# times inside JAX's cache write (`compilation_cache.put_executable_and_time`, serializing a freshly
# compiled executable), each time late in the run while compiling a sparse-training transform
# (tests/sparsity/test_transforms.py, tests/scale/test_optax_contract.py), never when those files ran
# alone; pytest-xdist then hung until CI's time limit. With a shared folder a worker also aborted
# reading an entry that the other was still writing (JAX writes entries without a lock). A user who
# wants the cache sets JAX_COMPILATION_CACHE_DIR themselves; the tests' subprocesses inherit it.
