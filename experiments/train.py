"""``train_and_evaluate(config, workdir)``: the one training loop every jaxdyn experiment uses.

The config chooses the dataset, model, objective (loss), optimizer and wrapping transforms, and
callbacks; a technique plugs in by registering one of those (``experiments/registry.py``). The loop
checkpoints with orbax (state, RNG, step, data-iterator position, elapsed time) and resumes from the
workdir's latest checkpoint; it writes metrics to JSONL and TensorBoard, plots learning curves, prints
a progress line, and ends with a results table.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import json
import pathlib
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from experiments import checkpointing, config_schema, metrics_io, registry, sharding
from experiments.objectives import eval_metrics
from experiments.optimizers import make_schedule
from jaxdyn.data import eval_batches, load_dataset, train_pipeline
from jaxdyn.models import create_model

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CURVES_PNG = "learning_curves.png"


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  rest: Any  # non-parameter model state, e.g. BatchNorm statistics
  opt_state: Any
  rng: jax.Array  # raw uint32 key data; the step's key is fold_in(rng, step)


@dataclasses.dataclass
class Context:
  """What callbacks see: the config, the workdir, data, the model's graph and the current state."""

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  dataset: Any
  graphdef: Any
  writer: metrics_io.MetricWriter
  is_main: bool
  state: TrainState | None = None

  def model(self):
    """The model merged from the current state (inference use)."""
    return nnx.merge(self.graphdef, self.state.params, self.state.rest)

  @functools.cached_property
  def _features_fn(self):
    @jax.jit
    def f(params, rest, x):
      logits, h = nnx.merge(self.graphdef, params, rest)(x, train=False, return_features=True)
      return logits, h
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


def build_optimizer(config, total_steps: int) -> optax.GradientTransformation:
  """The configured optimizer, its schedule over ``total_steps``, wrapped by ``config.transforms``.

  A transform whose factory takes ``total_steps`` (e.g. ``ssvi``) gets ``total_steps`` unless its
  config entry sets one, so ``--config.num_train_steps=...`` moves its schedule too.
  """
  opt = config.optimizer
  lr = make_schedule(opt.schedule, base=opt.learning_rate, total_steps=total_steps,
                     warmup_steps=opt.warmup_steps, boundaries=tuple(opt.boundaries), decay=opt.decay)
  tx = registry.get("optimizer", opt.name)(lr, **dict(opt.kwargs))
  for item in config.transforms:
    item = dict(item)
    factory = registry.get("transform", item.pop("name"))
    if "total_steps" in inspect.signature(factory).parameters:
      item.setdefault("total_steps", total_steps)  # the run's steps, unless the config sets its own
    tx = factory(tx, **item)
  return tx


def objective_kwargs(config, objective, num_train: int) -> dict[str, Any]:
  """``config.objective_kwargs``, plus what the run determines, for an objective that takes it.

  An objective whose signature has ``num_train`` (training examples), ``steps_per_epoch``
  (floor(num_train / batch_size), at least 1) or ``num_epochs`` (ceil(num_train_steps /
  steps_per_epoch)) gets them unless the config sets them, so ``--config.num_train_steps`` or
  ``--config.batch_size`` overrides keep epoch-based schedules (SSVI's KL warm-up) consistent.
  """
  kwargs = dict(config.objective_kwargs)
  steps_per_epoch = max(1, num_train // config.batch_size)
  run = {"num_train": num_train, "steps_per_epoch": steps_per_epoch,
         "num_epochs": math.ceil(config.num_train_steps / steps_per_epoch)}
  params = inspect.signature(objective).parameters
  for name, value in run.items():
    if name in params:
      kwargs.setdefault(name, value)
  return kwargs


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_train_step(graphdef, tx, objective, objective_kwargs, *, nonfinite: str):
  """A pure ``(state, batch) -> (state, metrics)`` step; jit it at the call site.

  The objective also gets ``step`` (the traced step number) if its signature has that parameter.
  """
  takes_step = "step" in inspect.signature(objective).parameters

  def step_fn(state: TrainState, batch):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params):
      model = nnx.merge(graphdef, params, state.rest, copy=True)  # fresh Variables at this trace level
      extra = {"step": state.step} if takes_step else {}
      loss, aux = objective(model, batch, key=key, **extra, **objective_kwargs)
      _, _, rest = nnx.split(model, nnx.Param, ...)
      return loss, (aux, rest)

    (loss, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = state.replace(step=state.step + 1, params=params, rest=rest, opt_state=opt_state)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    if nonfinite == "skip":  # keep the old state but still advance the step (and the data)
      kept = state.replace(step=state.step + 1)
      new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, kept)
    logits = aux.pop("logits")
    metrics = {
        "train_loss": loss,
        "train_accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"]),
        "grad_norm": optax.global_norm(grads),
        "nonfinite": 1 - finite.astype(jnp.int32),
        **{k: v for k, v in aux.items() if jnp.ndim(v) == 0},
    }
    return new, metrics

  return step_fn


def make_eval_step(graphdef):
  def eval_step(params, rest, batch):
    return eval_metrics(nnx.merge(graphdef, params, rest), batch)
  return eval_step


def evaluate(eval_step, state, dataset, config, shard) -> dict[str, float]:
  totals = None
  for b in eval_batches(dataset.eval, batch_size=config.eval_batch_size,
                        process_index=jax.process_index(), process_count=jax.process_count()):
    out = eval_step(state.params, state.rest, shard(b))
    totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
  totals = jax.device_get(totals)
  n = float(totals["count"])
  return {"eval_loss": float(totals["loss"]) / n, "eval_accuracy": float(totals["correct"]) / n}


def _mean_metrics(buffer: list[dict[str, Any]]) -> dict[str, Any]:
  host = jax.device_get(buffer)
  out = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "nonfinite"}
  out["nonfinite_steps"] = int(sum(int(m["nonfinite"]) for m in host))
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates the model the config describes; resumes from ``workdir`` if possible.

  Returns the results dict also saved as ``results.json``: final train/eval loss and accuracy, steps,
  wall time (summed over resumed runs) and the eval history.
  """
  config_schema.validate(config)
  workdir = config_schema.check_workdir(workdir)
  is_main = jax.process_index() == 0
  t_start = time.monotonic()

  dataset = load_dataset(config.dataset, cache_dir=config.cache_dir or None, data_dir=config.data_dir or None)
  model = create_model(config.model, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                       rngs=nnx.Rngs(params=config.seed), kwargs=config.model_kwargs)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = build_optimizer(config, config.num_train_steps)
  state = TrainState(step=jnp.int32(0), params=params, rest=rest, opt_state=tx.init(params),
                     rng=jax.random.key_data(jax.random.key(config.seed + 1)))

  mesh = sharding.data_mesh()
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))
  if config.batch_size % mesh.size:
    raise ValueError(f"config.batch_size: {config.batch_size} must divide evenly over {mesh.size} devices")
  if config.eval_batch_size % mesh.size:
    raise ValueError(f"config.eval_batch_size: {config.eval_batch_size} must divide evenly over "
                     f"{mesh.size} devices")
  state_shardings = sharding.state_shardings(state, mesh, config.sharding)

  def shard(batch):
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(data_sharding, x), batch)

  # The train step's batches: with one process, the host arrays go to the jitted step as they are and
  # its in_shardings place them; a separate device_put per step measured ~0.4 ms a step on a 2-core
  # CPU (benchmarks/loop_overhead.py). Several processes need global arrays built from their rows.
  feed = (lambda batch: batch) if jax.process_count() == 1 else shard

  # Restore the newest intact checkpoint (a damaged one is skipped with a warning naming it).
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", max_to_keep=config.max_checkpoints)
  writer = metrics_io.MetricWriter(workdir, enabled=is_main)
  data_state = {"next_index": 0}
  elapsed_before = 0.0
  state = jax.device_put(state, state_shardings)
  restored = ckpt.restore_latest(jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
  latest = None
  if restored is not None:
    latest, state = restored.step, restored.state
    data_state, elapsed_before = restored.meta["data"], float(restored.meta["elapsed_s"])
    writer.truncate_after(latest)
    if is_main:
      print(f"Resuming from checkpoint at step {latest}/{config.num_train_steps}", flush=True)

  results_path = workdir / RESULTS_JSON
  if latest is not None and latest >= config.num_train_steps and results_path.exists():
    results = json.loads(results_path.read_text())
    if is_main:
      print(f"Run in {workdir} already finished at step {latest}; results:\n{metrics_io.results_table(results)}")
    writer.close()
    return results

  ctx = Context(config, workdir, dataset, graphdef, writer, is_main, state)
  callbacks = []
  for item in config.callbacks:
    item = dict(item)
    callbacks.append(registry.get("callback", item.pop("name"))(ctx, **item))

  objective = registry.get("objective", config.objective)
  kwargs = objective_kwargs(config, objective, len(dataset.train))
  train_step = jax.jit(make_train_step(graphdef, tx, objective, kwargs, nonfinite=config.nonfinite),
                       in_shardings=(state_shardings, data_sharding),
                       out_shardings=(state_shardings, replicated), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(graphdef), out_shardings=replicated)

  # Compile the eval step now: a broken eval fails before training, and its compile time does not land
  # in the middle of the run.
  first_eval = next(eval_batches(dataset.eval, batch_size=config.eval_batch_size,
                                 process_index=jax.process_index(), process_count=jax.process_count()))
  jax.block_until_ready(eval_step(state.params, state.rest, shard(first_eval)))

  pipeline = train_pipeline(dataset.train, batch_size=config.batch_size, seed=config.seed,
                            process_index=jax.process_index(), process_count=jax.process_count(),
                            augment=config.augment)
  it = iter(pipeline)
  it.set_state(data_state)

  progress = metrics_io.Progress(config.num_train_steps, every_seconds=config.progress_every_seconds,
                                 enabled=is_main)
  step = int(state.step)
  progress.start(step)
  buffer: list[dict[str, Any]] = []
  last_train: dict[str, Any] = {}
  last_eval: dict[str, float] = {}
  total_skipped = 0

  def flush(step: int) -> None:
    nonlocal last_train, total_skipped
    if not buffer:
      return
    host = jax.device_get(buffer)
    bad = [step - len(host) + 1 + i for i, m in enumerate(host) if int(m["nonfinite"])]
    if bad and config.nonfinite == "fail":
      raise FloatingPointError(
          f"non-finite loss or gradients at step {bad[0]} (config.nonfinite='fail'; "
          f"set it to 'skip' to skip such updates and count them)")
    total_skipped += len(bad)
    last_train = _mean_metrics(host)
    last_train["skipped_updates_total"] = total_skipped
    buffer.clear()

  def save(step: int) -> None:
    meta = {"data": it.get_state(), "elapsed_s": elapsed_before + time.monotonic() - t_start}
    ckpt.save(step, state, meta)

  try:
    while step < config.num_train_steps:
      batch = feed(next(it))
      state, m = train_step(state, batch)
      step += 1
      buffer.append(m)
      ctx.state = state
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        flush(step)
        writer.write(step, last_train)
      if step % config.eval_every_steps == 0 or step == config.num_train_steps:
        last_eval = evaluate(eval_step, state, dataset, config, shard)
        writer.write(step, last_eval)
      for cb in callbacks:
        cb.on_step(step)
      if progress.due():
        progress.report(step, float(m["train_loss"]))
      if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
        flush(step)  # never checkpoint a state whose updates were not checked for non-finite values
        save(step)

  except BaseException:
    ckpt.wait_until_finished()  # a save already under way completes: nothing is lost on a crash
    writer.close()
    raise

  ckpt.wait_until_finished()
  final = {}
  for cb in callbacks:
    final.update({f"final_{k}": v for k, v in (cb.on_end() or {}).items()})
  wall = elapsed_before + time.monotonic() - t_start
  rows = metrics_io.read_metrics(workdir) if is_main else []
  results = {
      "steps": step,
      "train_loss": last_train.get("train_loss"),
      "train_accuracy": last_train.get("train_accuracy"),
      "eval_loss": last_eval.get("eval_loss"),
      "eval_accuracy": last_eval.get("eval_accuracy"),
      "skipped_updates": total_skipped,
      "wall_time_s": round(wall, 2),
      **final,
      "history": rows,  # every logged row: train metrics every log step, eval metrics every eval step
  }
  if is_main:
    metrics_io.plot_learning_curves(rows, workdir / CURVES_PNG, title=f"{config.model} on {config.dataset}")
    (workdir / RESULTS_JSON).write_text(json.dumps(results, indent=1))
    table = metrics_io.results_table(results)
    (workdir / RESULTS_MD).write_text(table + "\n")
    print(f"\nResults ({workdir}):\n{table}", flush=True)
  writer.close()
  ckpt.close()
  return results
