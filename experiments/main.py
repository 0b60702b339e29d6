"""Runs one experiment: ``python -m experiments.main --config=configs/<name>.py --workdir=<dir>``.

Config values can be overridden with ``--config.<key>=<value>``; an unknown key is an error.
"""

import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.train import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots and results.")
config_flags.DEFINE_config_file("config", None, "Experiment configuration file.", lock_config=True)
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
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
