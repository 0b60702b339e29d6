"""Shared test set-up."""

import os

# Keep XLA:CPU to one intra-op thread per pytest-xdist worker on the 2-core CI machine.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
