"""What the loop builds once and hands to callbacks: the train state and the run's context.

Callbacks (big_vision's evaluators are the model) read everything from the `Context`: the resolved
config, the built optimizer, the compiled train step, the model's graphdef, the dataset and the
current state. They never import the training loop or re-derive a default the run already knows.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments import metrics_io
from jaxdyn.data import Dataset, eval_batches


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  rest: Any  # non-parameter model state, e.g. BatchNorm statistics
  opt_state: Any
  rng: jax.Array  # raw uint32 key data; the step's key is fold_in(rng, step)
  skipped: jax.Array  # updates skipped for non-finite values so far (config.nonfinite="skip")


@dataclasses.dataclass
class Context:
  """The run as callbacks see it (built once by `experiments.train`).

  Attributes:
    config: the resolved config: the config as given, with the values the run determines filled in
      (an objective's ``num_train``, a transform's ``total_steps``), locked.
    run_values: those determined values by name (``num_train``, ``steps_per_epoch``,
      ``num_epochs``, ``total_steps``).
    workdir: the run's directory.
    dataset: the `jaxdyn.data.Dataset` (train and eval sources, input shape, classes).
    graphdef: the model's NNX graph definition (``nnx.merge(graphdef, params, rest)``).
    tx: the built optimizer (configured optimizer wrapped by every transform).
    train_step: the compiled ``(state, batch) -> (state, metrics)`` step the loop runs
      (``train_step.memory_analysis()`` / ``cost_analysis()`` describe it).
    writer: JSONL and TensorBoard metrics (``writer.write(step, {...})``; process 0 writes).
    is_main: whether this is process 0.
    label: a short name of the run for titles, e.g. ``"rankmixup[method=mndcg]"``.
    state: the current `TrainState` (updated by the loop after every step).
  """

  config: ml_collections.ConfigDict
  run_values: Mapping[str, Any]
  workdir: pathlib.Path
  dataset: Dataset
  graphdef: Any
  tx: optax.GradientTransformation
  train_step: Any
  writer: metrics_io.MetricWriter
  is_main: bool
  label: str
  state: TrainState | None = None

  def model(self) -> nnx.Module:
    """The model merged from the current state, in inference mode."""
    model = nnx.merge(self.graphdef, self.state.params, self.state.rest)
    model.eval()
    return model

  @functools.cached_property
  def _features_fn(self):
    @jax.jit
    def f(params, rest, x):
      return nnx.merge(self.graphdef, params, rest)(x, train=False, return_features=True)
    return f

  def features(self, x: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """``(logits, penultimate features)`` of the current model on inputs ``x`` (inference mode)."""
    return self._features_fn(self.state.params, self.state.rest, x)

  def eval_outputs(self, *, split: str = "eval", batch_size: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits, features, labels)`` of the current model over all of ``split`` ("eval" or "train").

    This process's share only (the whole split in a single-process run).
    """
    source = {"eval": self.dataset.eval, "train": self.dataset.train}[split]
    logits, feats, labels = [], [], []
    for b in eval_batches(source, batch_size=batch_size or self.config.eval_batch_size,
                          process_index=jax.process_index(), process_count=jax.process_count()):
      lo, h = self.features(b["x"])
      keep = b["mask"] > 0
      logits.append(np.asarray(lo)[keep])
      feats.append(np.asarray(h)[keep])
      labels.append(b["y"][keep])
    return np.concatenate(logits), np.concatenate(feats), np.concatenate(labels)

  def opt_state_value(self, field: str) -> Any:
    """A field of a transform's state found anywhere in the optimizer state (``optax.tree_utils.tree_get``),
    e.g. SSVI's ``topology_steps``; raises naming the field when no transform holds it."""
    value = optax.tree_utils.tree_get(self.state.opt_state, field)
    if value is None:
      raise KeyError(f"{field}: no transform state in this run's optimizer holds it")
    return jax.device_get(value)
