"""Runs one experiment: ``python -m experiments.main --config=configs/<name>.py --workdir=<dir>``.

Config values can be overridden with ``--config.<key>=<value>``; an unknown key is an error.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.train import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots and results.")
config_flags.DEFINE_config_file("config", None, "Experiment configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
