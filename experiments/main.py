"""Runs one experiment: ``python -m experiments.main --config=configs/<name>.py --workdir=<dir>``.

Config values are overridden with ``--config.<key>=<value>``; an unknown key is an error that says
which keys are close. Tuples (``transforms``, ``callbacks``) take a Python literal:
``--config.callbacks='({"name": "dse", "every_steps": 50},)'`` or just ``--config.callbacks=dse``.
Switching ``--config.objective`` (or ``--config.model``, ``--config.optimizer.name``) on the command
line starts its keyword arguments from the new piece's defaults unless the command line also sets
them (the config file's arguments belong to the piece it named); a line says so.

Every configuration error is one line on stderr and exit code 2; a run that fails (a checkpoint that
cannot be written, a non-finite loss) prints what happened and exits 1 within seconds, whatever
background threads are left (orbax's async writers never block the exit). ``--traceback`` prints
the full traceback as well.

Multi-process: start one process per host (or per CPU process) with ``--coordinator_address=host:port
--num_processes=N --process_id=i``; data is sharded by process index, and checkpoints, metrics and
results are written by process 0 (orbax coordinates the checkpoint writes of all processes).
"""

from __future__ import annotations

import os
import re
import sys
import traceback

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots and results.")
config_flags.DEFINE_config_file("config", None, "Experiment configuration file.", lock_config=True)
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, for a multi-process run through jax.distributed.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.DEFINE_bool("traceback", False, "Print the full traceback of a failure, not only its message.")
flags.DEFINE_bool("dry_run", False, "Check the config, build the model's shapes and trace the train step; "
                  "train nothing, write nothing.")
flags.mark_flags_as_required(["config", "workdir"])

# A named piece and the key holding its keyword arguments.
PIECES = (("objective", "objective_kwargs"), ("model", "model_kwargs"), ("optimizer.name", "optimizer.kwargs"))


def _fatal(message: str, code: int) -> None:
  print(f"FATAL: {message}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(code)  # pylint: disable=protected-access  (no non-daemon thread may hold the exit)


def _unknown_key_message(error: Exception, argv: list[str]) -> str:
  while error.args and isinstance(error.args[0], BaseException):  # AttributeError(KeyError(message))
    error = error.args[0]
  text = str(error.args[0] if error.args else error).strip()
  first, *rest = [line.strip() for line in text.splitlines() if line.strip()]
  key = first.strip("'\"")
  arg = next((a for a in argv if a.startswith("--config.") and re.split(r"[=.]", a[len("--config."):].split("=")[0])
              [-1] == key), None) or next((a for a in argv if key in a), "")
  hint = f"; {rest[0][0].lower()}{rest[0][1:]}" if rest else "; see the config file for the valid keys"
  return f"config: unknown key {key!r} in {arg.split('=')[0] or '--config'}{hint}"


def _parse_flags(argv):
  """absl's parser, with one-line errors for unknown ``--config.<key>`` overrides and bad values."""
  try:
    rest = FLAGS(argv)
  except (AttributeError, KeyError) as e:
    _fatal(_unknown_key_message(e, argv), 2)
  except flags.Error as e:
    _fatal(str(e).splitlines()[0], 2)
  _reset_switched_kwargs(argv)
  return rest


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def _reset_switched_kwargs(argv: list[str]) -> None:
  """``--config.objective=X`` without ``--config.objective_kwargs...`` starts X from its defaults."""
  given = [a.split("=", 1)[0][len("--config."):] for a in argv if a.startswith("--config.")]
  config = FLAGS.config
  for name_key, kwargs_key in PIECES:
    switched = name_key in given and not any(g == kwargs_key or g.startswith(kwargs_key + ".") for g in given)
    kwargs = _get(config, kwargs_key)
    if switched and len(kwargs):
      parent_key, _, leaf = kwargs_key.rpartition(".")
      with config.unlocked():
        (_get(config, parent_key) if parent_key else config)[leaf] = ml_collections.ConfigDict()
      print(f"note: --config.{name_key}={_get(config, name_key)} without --config.{kwargs_key}: "
            f"{kwargs_key} starts from the defaults of {_get(config, name_key)!r} (the config file's "
            f"{', '.join(sorted(kwargs))} belonged to its own choice)", file=sys.stderr, flush=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top  (after flags: faster --help)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from experiments import checkpointing  # pylint: disable=g-import-not-at-top
  from experiments.config_schema import ConfigError  # pylint: disable=g-import-not-at-top
  from experiments.train import build, train_and_evaluate  # pylint: disable=g-import-not-at-top

  try:
    if FLAGS.coordinator_address:
      initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if FLAGS.dry_run:
      built = build(FLAGS.config, abstract=True)
      params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(built.state.params))
      print(f"config OK: model {built.config.model!r} ({params:,} parameters) on {built.config.dataset!r}, "
            f"objective {built.label!r}, {built.config.num_train_steps} steps; the train step traces")
    else:
      train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except ConfigError as e:
    if FLAGS.traceback:
      traceback.print_exc()
    _fatal(str(e), 2)
  except checkpointing.CheckpointWriteError as e:
    if FLAGS.traceback:
      traceback.print_exc()
    _fatal(f"{e}; the run stopped. Make the folder writable (or free space), then rerun the same command "
           f"to resume from the last checkpoint", 1)
  except FloatingPointError as e:
    if FLAGS.traceback:
      traceback.print_exc()
    _fatal(f"{e}; the run stopped at its last checkpoint", 1)
  except KeyboardInterrupt:
    _fatal("interrupted; rerun the same command to resume from the last checkpoint", 130)
  except Exception:  # pylint: disable=broad-except  (a bug: show everything, then leave)
    traceback.print_exc()
    _fatal("the run failed (traceback above)", 1)
  sys.stdout.flush()
  sys.stderr.flush()


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
