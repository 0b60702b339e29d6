"""Runs one experiment: ``python -m experiments.main --config=configs/<name>.py --workdir=<dir>``.

Config values can be overridden with ``--config.<key>=<value>``; an unknown key is an error.
Multi-process: start one process per host (or per CPU process) with ``--coordinator_address=host:port
--num_processes=N --process_id=i``; data is sharded by process index, and checkpoints, metrics and
results are written by process 0 (orbax coordinates the checkpoint writes of all processes).
"""

import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.train import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots and results.")
config_flags.DEFINE_config_file("config", None, "Experiment configuration file.", lock_config=True)
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, for a multi-process run through jax.distributed.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv):
  """absl's parser, with a one-line error naming an unknown ``--config.<key>`` override."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    bad = next((a for a in overrides if re.sub(r"^--config\.([^=]*).*", r"\1", a).split(".")[-1]
                in str(e)), overrides[0] if overrides else "")
    print(f"FATAL: config: unknown key in {bad!r} ({e}); see the config file for the valid keys",
          file=sys.stderr)
    sys.exit(2)
  except flags.Error as e:
    print(f"FATAL: {e}", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  if FLAGS.coordinator_address:
    initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """``jax.distributed.initialize``; on CPU, with gloo collectives so processes can all-reduce."""
  import jax  # pylint: disable=g-import-not-at-top

  if num_processes is None or process_id is None:
    raise app.UsageError("--num_processes and --process_id are required with --coordinator_address")
  if jax.config.jax_platforms in (None, "", "cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
