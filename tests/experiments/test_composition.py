"""Composition is jaxdyn's promise: every compatible pair of registered pieces trains together.

Pairs, not the full product: objective x model (each model at its ``tiny`` size on a dataset it fits),
objective x transform and objective x callback (each on the smallest model that has what both need).

- Every objective x model pair is built by the harness as a dry run (`experiments.train.build` with
  ``abstract=True``: validation, the model's shapes, capabilities, optimizer, callbacks, and the whole
  train step traced), which is where a wrong pairing shows itself: shapes, dtypes, a missing method.
- Two compiled steps run for a covering set of those pairs, so every piece's code runs: every
  objective on its smallest model, and with ``ce`` every model that no config's smoke test
  (`tests/experiments/test_configs.py`, which trains each config for 3 steps) already trains.
  Compiling the remaining pairs of heavy models (ResNets, VGG, ViT) would cost many minutes of XLA:CPU
  compile in CI and find nothing that tracing does not.
- Every objective x transform and objective x callback pair is built as a dry run too; each transform
  and each callback also runs two steps through the whole loop (`train_and_evaluate`: compile, train,
  evaluate, checkpoint, callbacks) with ``ce`` (or, where it needs something ``ce``'s model lacks, the
  first objective it pairs with), so its code runs in a real training run.

An incompatible pair (a piece requires a capability the model lacks) must fail config validation,
before anything compiles, with one message naming both. New families join the matrix by registering
their pieces; nothing here lists them.
"""

from __future__ import annotations

import functools
import importlib
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from configs import default
from experiments import registry
from experiments.config_schema import ConfigError
from experiments.train import build, train_and_evaluate
from jaxdyn.data import load_dataset, train_pipeline

DATASETS = ("mnist1d", "digits", "clips")  # 1-D signals, small images, clips: the first one a model fits is used


def _pieces(kind):
  """The pieces the adapters register (not the ones test modules add for themselves)."""
  return [e for e in registry.entries(kind) if e.module.startswith("experiments.techniques")]


@functools.cache
def _shape(dataset):
  ds = load_dataset(dataset)
  return tuple(ds.input_shape), ds.num_classes


@functools.cache
def _fit(model_name):
  """(dataset, capabilities) of the model at its tiny size: the first dataset it fits."""
  e = registry.entry("model", model_name)
  for dataset in DATASETS:
    shape, classes = _shape(dataset)
    try:
      model = nnx.eval_shape(lambda: e.obj(shape, classes, nnx.Rngs(0), **e.tiny))
    except ValueError as err:
      if str(err).startswith("input_shape:"):
        continue
      raise
    caps = frozenset(c.name for c in _pieces("capability") if c.obj(model))
    return dataset, caps
  raise AssertionError(f"model {model_name!r} fits none of {DATASETS}")


MODELS = [e.name for e in _pieces("model")]  # registration order within a module; sorted by name


@functools.cache
def _num_params(model_name) -> int:
  """Parameters of the model at its tiny size on its dataset (shapes only, nothing initialised)."""
  e = registry.entry("model", model_name)
  shape, classes = _shape(_fit(model_name)[0])
  model = nnx.eval_shape(lambda: e.obj(shape, classes, nnx.Rngs(0), **e.tiny))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _smallest(requires):
  """The smallest model whose capabilities cover ``requires``: 1-D models first, then the families
  that compile slowly at any size (ResNets, VGG, ViTs) last, then by parameter count (so ``ce``
  runs on the plain CNN, not on the Bayesian one that samples its weights)."""
  order = sorted(MODELS, key=lambda m: (_fit(m)[0] != "mnist1d", "resnet" in m or "vgg" in m or "vit" in m,
                                        _num_params(m), m))
  for m in order:
    if set(requires) <= _fit(m)[1]:
      return m
  return None


def _config(model, objective, *, transforms=(), callbacks=()):
  c = default.get_config()
  dataset, _ = _fit(model)
  c.dataset, c.model = dataset, model
  c.model_kwargs = dict(registry.entry("model", model).tiny)
  c.objective = objective
  c.objective_kwargs = dict(registry.entry("objective", objective).tiny)
  c.transforms = tuple({"name": t, **registry.entry("transform", t).tiny} for t in transforms)
  c.callbacks = tuple({"name": cb, **registry.entry("callback", cb).tiny} for cb in callbacks)
  c.batch_size, c.eval_batch_size = 16, 256
  c.num_train_steps = c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 2
  c.max_checkpoints = 1
  return c


def _two_steps(config):
  """The harness's own build and compiled step, run on two batches of its own pipeline."""
  built = build(config)
  step = built.train_step.lower().compile()
  state = jax.device_put(built.state, built.state_shardings)
  batches = iter(train_pipeline(built.dataset.train, batch_size=config.batch_size, seed=config.seed))
  for _ in range(2):
    state, metrics = step(state, next(batches))
  assert int(state.step) == 2 and np.isfinite(float(metrics["train_loss"])), metrics


def _check(config, tmp_path, pieces, *, run="loop"):
  """If every piece's requirements hold on the model: ``run`` = "loop" (two steps of the whole loop),
  "steps" (two compiled steps) or "trace" (a dry run); else a validation error naming both."""
  caps = _fit(config.model)[1]
  missing = [(kind, name) for kind, name in pieces if not set(registry.entry(kind, name).requires) <= caps]
  if not missing:
    if run == "loop":
      res = train_and_evaluate(config, str(tmp_path))
      assert res["steps"] == 2 and res["eval_loss"] is not None
    elif run == "steps":
      _two_steps(config)
    else:
      built = build(config, abstract=True)
      out_state, metrics = built.train_step.out_info
      assert metrics["train_loss"].shape == () and out_state.step.shape == ()
    return
  with pytest.raises(ConfigError) as info:
    train_and_evaluate(config, str(tmp_path / "w"))
  kind, name = missing[0]
  message = str(info.value)
  assert f"{kind} {name!r}" in message and f"model {config.model!r}" in message, message
  assert not (tmp_path / "w").exists()


def _ids(pairs):
  return [f"{a}-{b}" for a, b in pairs]


OBJECTIVES = [e.name for e in _pieces("objective")]
OBJ_MODEL = [(o, m) for o in OBJECTIVES for m in MODELS]


@functools.cache
def _models_trained_by_configs() -> frozenset[str]:
  names = [p.stem for p in pathlib.Path(__file__).parents[2].joinpath("configs").glob("*.py")
           if not p.name.startswith("_")]
  # Measurement configs run by their own runner (configs/icl_linear.py) train no registry model; runner configs
  # whose ``model`` is a section of settings (configs/dd_stdlib.py) do not either.
  models = (importlib.import_module(f"configs.{n}").get_config().get("model") for n in names)
  return frozenset(m for m in models if isinstance(m, str))


def _runs_two_steps(objective, model):
  """The covering set: every objective on its smallest compatible model; ce on every model that no
  config's smoke test trains."""
  if model == _smallest(registry.entry("objective", objective).requires):
    return True
  return objective == "ce" and model not in _models_trained_by_configs()


@pytest.mark.parametrize("objective,model", OBJ_MODEL, ids=_ids(OBJ_MODEL))
def test_objective_with_model(objective, model, tmp_path):
  run = "steps" if _runs_two_steps(objective, model) else "trace"
  _check(_config(model, objective), tmp_path, [("objective", objective)], run=run)


def _with_smallest(kind, objective, name):
  requires = {*registry.entry("objective", objective).requires, *registry.entry(kind, name).requires}
  return _smallest(requires)


OBJ_TRANSFORM = [(o, t.name) for o in OBJECTIVES for t in _pieces("transform")]


def _model_for(kind, objective, name):
  """The smallest model that has what both pieces need; when none has, the objective's own smallest
  model (the pair is incompatible, and validation must name the other piece and the model)."""
  model = _with_smallest(kind, objective, name) or _smallest(registry.entry("objective", objective).requires)
  assert model is not None, f"no registered model has what objective {objective!r} needs"
  return model


def _runs_the_loop(kind, objective, name):
  """The covering set of the pair tests: each transform / callback with its first compatible objective
  (``ce`` first)."""
  def compatible(o):
    model = _model_for(kind, o, name)
    needs = {*registry.entry("objective", o).requires, *registry.entry(kind, name).requires}
    return needs <= _fit(model)[1]
  first = next((o for o in ["ce", *OBJECTIVES] if o in OBJECTIVES and compatible(o)), None)
  return objective == first


@pytest.mark.parametrize("objective,transform", OBJ_TRANSFORM, ids=_ids(OBJ_TRANSFORM))
def test_objective_with_transform(objective, transform, tmp_path):
  model = _model_for("transform", objective, transform)
  _check(_config(model, objective, transforms=(transform,)), tmp_path,
         [("objective", objective), ("transform", transform)],
         run="loop" if _runs_the_loop("transform", objective, transform) else "trace")


OBJ_CALLBACK = [(o, c.name) for o in OBJECTIVES for c in _pieces("callback")]


@pytest.mark.parametrize("objective,callback", OBJ_CALLBACK, ids=_ids(OBJ_CALLBACK))
def test_objective_with_callback(objective, callback, tmp_path):
  model = _model_for("callback", objective, callback)
  _check(_config(model, objective, callbacks=(callback,)), tmp_path,
         [("objective", objective), ("callback", callback)],
         run="loop" if _runs_the_loop("callback", objective, callback) else "trace")


def test_declared_incompatibilities_fail_validation_naming_both(tmp_path):
  # msd needs a head split; a spiking network has none (its output is a mean over time steps).
  assert "head_split" not in _fit("spiking_mlp")[1]
  with pytest.raises(ConfigError, match=r"config.objective: objective 'msd' needs a model with capability "
                                        r"'head_split' .*model 'spiking_mlp' does not have it"):
    train_and_evaluate(_config("spiking_mlp", "msd"), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_every_piece_of_every_kind_is_in_the_matrix():
  for kind in ("objective", "transform", "callback", "model"):
    assert _pieces(kind), kind
  assert {"msd", "sltt", "vi", "ce"} <= set(OBJECTIVES)
  assert {"spiking_mlp", "bayes_mlp", "mlp"} <= set(MODELS)
