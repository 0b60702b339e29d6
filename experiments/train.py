"""``train_and_evaluate(config, workdir)``: the one training loop every jaxdyn experiment uses.

`build` turns a config into everything the loop needs, before the workdir is touched: it validates
the config, loads the dataset, builds the model, checks that the objective, transforms and callbacks
get the model capabilities they require, builds the optimizer and the callbacks (so their arguments
are checked), and traces the train step (so an objective's argument that fails only when traced,
``label_smoothing=1.5`` say, is still a one-line configuration error naming its key).

`train_and_evaluate` then locks the workdir, binds it to the resolved config (``config.json``; a
resume that would change the trajectory is refused), restores the newest intact checkpoint, compiles
the traced step once, builds the callbacks' `Context`, and trains: JSONL and TensorBoard metrics,
a progress line, evaluation, checkpoints (state, RNG, step, data-iterator position, elapsed time and
the latest metrics), and at the end plots and a results table.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from experiments import checkpointing, config_schema, metrics_io, optim, registry, sharding, workdir as workdir_lib
from experiments.config_schema import ConfigError
from experiments.context import Context, TrainState
from jaxdyn.data import eval_batches, load_dataset, train_pipeline

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CURVES_PNG = "learning_curves.png"


def eval_metrics(model, batch):
  """Masked sums of loss and correct predictions on an eval batch (model in inference mode)."""
  logits = model(batch["x"], train=False)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
  correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
  m = batch["mask"]
  return {"loss": jnp.sum(loss * m), "correct": jnp.sum(correct * m), "count": jnp.sum(m)}


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_train_step(graphdef, tx, objective, objective_kwargs, *, nonfinite: str):
  """A pure ``(state, batch) -> (state, metrics)`` step; jit it at the call site.

  The objective also gets ``step`` (the traced step number) if its signature has that parameter.
  With ``nonfinite="skip"``, a step whose loss or gradients are not finite keeps the old parameters
  and optimizer state, still advances the step (and the data), and counts itself in ``state.skipped``.
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
    finite = jnp.isfinite(loss) & _all_finite(grads)
    new = state.replace(step=state.step + 1, params=params, rest=rest, opt_state=opt_state)
    if nonfinite == "skip":  # keep the old state but still advance the step (and the data)
      kept = state.replace(step=state.step + 1, skipped=state.skipped + 1)
      new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, kept)
    logits = aux.pop("logits")
    metrics = {
        "train_loss": loss,
        "train_accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"]),
        "grad_norm": optax.global_norm(grads),
        "nonfinite": 1 - finite.astype(jnp.int32),
        "skipped_updates_total": new.skipped,
        **{k: v for k, v in aux.items() if jnp.ndim(v) == 0},
    }
    return new, metrics

  return step_fn


def make_eval_step(graphdef):
  def eval_step(params, rest, batch):
    return eval_metrics(nnx.merge(graphdef, params, rest), batch)
  return eval_step


@dataclasses.dataclass
class Built:
  """A config turned into what the loop runs; nothing has been written or compiled yet."""

  config: ml_collections.ConfigDict  # the resolved config (run-determined values filled in)
  resolved: dict[str, Any]  # {"config": ..., "derived": ...}, what config.json holds
  run_values: dict[str, Any]
  dataset: Any
  graphdef: Any
  state: TrainState
  tx: optax.GradientTransformation
  lr: optax.Schedule
  callbacks: list[Any]
  mesh: Any
  state_shardings: Any
  data_sharding: Any
  train_step: Any  # traced (jax.stages.Traced); `.lower().compile()` gives the compiled step
  eval_step: Any  # traced likewise
  label: str


def _piece_error(config, error: Exception) -> ConfigError:
  """An error raised while tracing the step, as a ConfigError naming the config key it points at."""
  message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  name = message.split(":", 1)[0].strip("`")
  places = [("config.objective_kwargs", dict(config.objective_kwargs), config.objective),
            ("config.optimizer.kwargs", dict(config.optimizer.kwargs), config.optimizer.name)]
  places += [(f"config.transforms[{i}]", kw, n) for i, (n, kw) in enumerate(config_schema.entries(config, "transform"))]
  places += [("config.model_kwargs", dict(config.model_kwargs), config.model)]
  for where, kwargs, piece in places:
    if name in kwargs:
      return config_schema.from_library_error(where, error, kwargs, piece=piece)
  return ConfigError(f"config: the train step of objective {config.objective!r} with model {config.model!r} "
                     f"fails to trace: {message}")


def _label(config) -> str:
  variants = [f"{k}={v}" for k, v in sorted(dict(config.objective_kwargs).items()) if isinstance(v, str)]
  return config.objective + (f"[{','.join(variants)}]" if variants else "")


def _derived_transform_values(config, transforms) -> dict[str, dict[str, Any]]:
  """Per transform index, the run values (``total_steps``, ``seed``) filled in because the config did not set them."""
  given = config_schema.entries(config, "transform")
  out = {}
  for i, (name, kwargs) in enumerate(transforms):
    filled = {v: kwargs[v] for v in registry.entry("transform", name).run_values() if v not in dict(given[i][1])}
    if filled:
      out[str(i)] = filled
  return out


def build(config: ml_collections.ConfigDict, *, abstract: bool = False) -> Built:
  """Validates ``config`` and builds everything the loop needs; raises `ConfigError` naming a key.

  With ``abstract=True`` the model and the optimizer state are only shapes (`nnx.eval_shape`), so
  nothing is initialised or compiled: a dry run that checks the whole config, the capabilities and the
  traced step in seconds (``python -m experiments.main ... --dry_run``). The returned state is then
  abstract and the traced steps cannot be run.
  """
  config_schema.validate(config)
  try:
    dataset = load_dataset(config.dataset, cache_dir=config.cache_dir or None, data_dir=config.data_dir or None)
  except ValueError as e:
    raise ConfigError(f"config.dataset: {str(e).split(': ', 1)[-1]}") from None

  # The model, and the capabilities the other pieces need from it.
  model_kwargs = dict(config.model_kwargs)

  def make_model():
    return registry.get("model", config.model)(tuple(dataset.input_shape), dataset.num_classes,
                                               nnx.Rngs(params=config.seed), **model_kwargs)

  try:
    model = nnx.eval_shape(make_model) if abstract else make_model()
  except (TypeError, ValueError) as e:
    if str(e).startswith("input_shape:"):
      raise ConfigError(f"config.model: {config.model!r} does not fit dataset {config.dataset!r}: "
                        f"{str(e).split(':', 1)[1].strip()}") from None
    raise config_schema.from_library_error("config.model_kwargs", e, model_kwargs, piece=config.model) from None
  pieces = [("config.objective", "objective", config.objective)]
  pieces += [(f"config.transforms[{i}]", "transform", n) for i, (n, _) in enumerate(config_schema.entries(config, "transform"))]
  pieces += [(f"config.callbacks[{i}]", "callback", n) for i, (n, _) in enumerate(config_schema.entries(config, "callback"))]
  for where, kind, name in pieces:
    for cap in registry.entry(kind, name).requires:
      if not registry.capability(cap, model):
        doc = registry.entry("capability", cap).doc
        raise ConfigError(f"{where}: {kind} {name!r} needs a model with capability {cap!r} ({doc}); model "
                          f"{config.model!r} does not have it")

  # What the run determines, filled in where a piece takes it and the config does not set it.
  num_train = len(dataset.train)
  steps_per_epoch = max(1, num_train // config.batch_size)
  run_values = {"num_train": num_train, "steps_per_epoch": steps_per_epoch,
                "num_epochs": math.ceil(config.num_train_steps / steps_per_epoch),
                "total_steps": config.num_train_steps}
  objective_entry = registry.entry("objective", config.objective)
  objective_kwargs = dict(config.objective_kwargs)
  filled = {n: run_values[n] for n in objective_entry.run_values() if n != "step" and n not in objective_kwargs}
  objective_kwargs.update(filled)
  transforms = optim.transform_kwargs(config)
  resolved_config = ml_collections.ConfigDict(config.to_dict())
  resolved_config.objective_kwargs = ml_collections.ConfigDict(objective_kwargs)
  resolved_config.transforms = tuple({"name": n, **kw} for n, kw in transforms)
  resolved_config.lock()
  derived = {"objective": filled,
             "transforms": _derived_transform_values(config, transforms),
             "lr_schedule_steps": config.num_train_steps if config.optimizer.schedule in optim.DECAYING else None}

  tx = optim.build_optimizer(config)
  callbacks = []
  for i, (name, kwargs) in enumerate(config_schema.entries(config, "callback")):
    try:
      callbacks.append(registry.get("callback", name)(**kwargs))
    except (TypeError, ValueError) as e:
      raise config_schema.from_library_error(f"config.callbacks[{i}]", e, kwargs, piece=name) from None

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  try:
    opt_state = jax.eval_shape(tx.init, params) if abstract else tx.init(params)
  except (TypeError, ValueError) as e:
    raise _piece_error(config, e) from None
  state = TrainState(step=jnp.int32(0), params=params, rest=rest, opt_state=opt_state,
                     rng=jax.random.key_data(jax.random.key(config.seed + 1)), skipped=jnp.int32(0))

  mesh = sharding.data_mesh()
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % mesh.size:
      raise ConfigError(f"config.{key}: {config[key]} must divide evenly over {mesh.size} devices")
  state_shardings = sharding.state_shardings(state, mesh, config.sharding)
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())

  abstract_state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if hasattr(a, "dtype") else
                                jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), state)
  record = dataset.train[0]
  x_dtype, y_dtype = np.asarray(record["x"]).dtype, np.asarray(record["y"]).dtype
  batch = {"x": jax.ShapeDtypeStruct((config.batch_size, *dataset.input_shape), x_dtype),
           "y": jax.ShapeDtypeStruct((config.batch_size,), y_dtype)}
  step_fn = make_train_step(graphdef, tx, objective_entry.obj, objective_kwargs, nonfinite=config.nonfinite)
  jitted = jax.jit(step_fn, in_shardings=(state_shardings, data_sharding),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)
  try:
    traced = jitted.trace(abstract_state, batch)
  except (TypeError, ValueError) as e:
    raise _piece_error(config, e) from None
  eval_batch = {"x": jax.ShapeDtypeStruct((config.eval_batch_size, *dataset.input_shape), x_dtype),
                "y": jax.ShapeDtypeStruct((config.eval_batch_size,), y_dtype),
                "mask": jax.ShapeDtypeStruct((config.eval_batch_size,), jnp.float32)}
  eval_traced = jax.jit(make_eval_step(graphdef), in_shardings=(state_shardings.params, state_shardings.rest,
                                                                data_sharding),
                        out_shardings=replicated).trace(abstract_state.params, abstract_state.rest, eval_batch)
  return Built(resolved_config, {"config": resolved_config.to_dict(), "derived": derived}, run_values, dataset,
               graphdef, state, tx, optim.schedule(config), callbacks, mesh, state_shardings, data_sharding,
               traced, eval_traced, _label(config))


def _evaluate(eval_step, state, dataset, config, shard) -> dict[str, float]:
  totals = None
  for b in eval_batches(dataset.eval, batch_size=config.eval_batch_size,
                        process_index=jax.process_index(), process_count=jax.process_count()):
    out = eval_step(state.params, state.rest, shard(b))
    totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
  totals = jax.device_get(totals)
  n = float(totals["count"])
  return {"eval_loss": float(totals["loss"]) / n, "eval_accuracy": float(totals["correct"]) / n}


def _window_means(host: list[dict[str, Any]]) -> dict[str, Any]:
  """Means over a log window's finite steps; ``nonfinite_steps`` counts the others."""
  ok = [m for m in host if not int(m["nonfinite"])]
  out = {}
  for k in host[0]:
    if k in ("nonfinite", "skipped_updates_total"):
      continue
    vals = [float(m[k]) for m in ok]
    out[k] = float(np.mean(vals)) if vals else None
  out["nonfinite_steps"] = len(host) - len(ok)
  out["skipped_updates_total"] = int(host[-1]["skipped_updates_total"])
  return out


def _write_json(path: pathlib.Path, obj: Any) -> None:
  tmp = path.with_suffix(".tmp")
  tmp.write_text(metrics_io.dumps(obj, indent=1))
  tmp.replace(path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates the model the config describes; resumes from ``workdir`` if possible.

  Returns the results dict also saved as ``results.json``: final train/eval loss and accuracy, steps,
  wall time (summed over resumed runs), skipped updates, the callbacks' ``final_*`` values and the
  logged history. Configuration errors raise `ConfigError` before the workdir is touched.
  """
  t_start = time.monotonic()
  built = build(config)
  config = built.config
  is_main = jax.process_index() == 0
  workdir = workdir_lib.check_workdir(workdir)
  lock = workdir_lib.WorkdirLock(workdir) if is_main else None
  try:
    ckpt = checkpointing.Checkpointer(workdir / "checkpoints", max_to_keep=config.max_checkpoints)
    workdir_lib.bind_config(workdir, built.resolved, has_checkpoints=bool(ckpt.steps()), write=is_main)
    return _run(built, workdir, ckpt, is_main, t_start)
  finally:
    if lock is not None:
      lock.release()


def _run(built: Built, workdir: pathlib.Path, ckpt: checkpointing.Checkpointer, is_main: bool,
         t_start: float) -> dict[str, Any]:
  config, dataset = built.config, built.dataset

  def shard(batch):
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(built.data_sharding, x), batch)

  # One process hands the compiled step its host arrays (their placement is part of the executable); a
  # separate device_put per step measured ~0.4 ms a step on a 2-core CPU (benchmarks/loop_overhead.py).
  # Several processes need global arrays built from their rows.
  feed = (lambda batch: batch) if jax.process_count() == 1 else shard

  state = jax.device_put(built.state, built.state_shardings)
  restored = ckpt.restore_latest(jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
  latest, meta = None, {"data": {"next_index": 0}, "elapsed_s": 0.0}
  if restored is not None:
    latest, state, meta = restored.step, restored.state, restored.meta
  writer = metrics_io.MetricWriter(workdir, enabled=is_main, resume_step=latest)
  try:
    if latest is not None and is_main:
      print(f"Resuming from checkpoint at step {latest}/{config.num_train_steps}", flush=True)
    results_path = workdir / RESULTS_JSON
    if latest is not None and latest >= config.num_train_steps and results_path.exists():
      try:
        results = json.loads(results_path.read_text())
      except json.JSONDecodeError:
        results = None
      if results is not None:
        if is_main:
          print(f"Run in {workdir} already finished at step {latest}; results:\n{metrics_io.results_table(results)}")
        return results

    train_step = built.train_step.lower().compile()
    eval_step = built.eval_step.lower().compile()
    ctx = Context(config=config, run_values=built.run_values, workdir=workdir, dataset=dataset,
                  graphdef=built.graphdef, tx=built.tx, train_step=train_step, writer=writer, is_main=is_main,
                  label=built.label, state=state)
    for cb in built.callbacks:
      cb.setup(ctx)
    return _loop(built, ctx, ckpt, state, meta, latest, train_step, eval_step, feed, shard, t_start)
  finally:
    writer.close()


def _loop(built, ctx, ckpt, state, meta, latest, train_step, eval_step, feed, shard, t_start):
  config, dataset, workdir, writer = built.config, built.dataset, ctx.workdir, ctx.writer
  pipeline = train_pipeline(dataset.train, batch_size=config.batch_size, seed=config.seed,
                            process_index=jax.process_index(), process_count=jax.process_count(),
                            augment=config.augment)
  it = iter(pipeline)
  it.set_state(meta["data"])
  elapsed_before = float(meta["elapsed_s"])
  progress = metrics_io.Progress(config.num_train_steps, every_seconds=config.progress_every_seconds,
                                 enabled=ctx.is_main)
  step = int(state.step)
  first = step
  buffer: list[dict[str, Any]] = []
  last_train: dict[str, Any] = dict(meta.get("last_train") or {})
  last_eval: dict[str, float] = dict(meta.get("last_eval") or {})
  log_t, log_step = time.monotonic(), step

  def flush(step: int) -> None:
    nonlocal last_train, log_t, log_step
    if not buffer:
      return
    host = jax.device_get(buffer)
    bad = [step - len(host) + 1 + i for i, m in enumerate(host) if int(m["nonfinite"])]
    if bad and config.nonfinite == "fail":
      raise FloatingPointError(
          f"non-finite loss or gradients at step {bad[0]} (config.nonfinite='fail'; "
          f"set it to 'skip' to skip such updates and count them)")
    last_train = _window_means(host)
    now = time.monotonic()
    last_train["steps_per_sec"] = (step - log_step) / max(now - log_t, 1e-9)
    last_train["learning_rate"] = float(built.lr(step - 1))
    log_t, log_step = now, step
    buffer.clear()

  def save(step: int) -> None:
    writer.flush()  # the metric lines up to the checkpoint are on disk before it
    ckpt.save(step, state, {"data": it.get_state(), "elapsed_s": elapsed_before + time.monotonic() - t_start,
                            "last_train": last_train, "last_eval": last_eval})

  try:
    while step < config.num_train_steps:
      batch = feed(next(it))
      state, m = train_step(state, batch)
      step += 1
      buffer.append(m)
      ctx.state = state
      if step == first + 1:  # the first step compiled and warmed up: time from here
        jax.block_until_ready(m)
        progress.start(step)
        log_t, log_step = time.monotonic(), step
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        flush(step)
        writer.write(step, last_train)
        ckpt.check()  # a failed asynchronous save stops the run now, not at the next save
      if step % config.eval_every_steps == 0 or step == config.num_train_steps:
        last_eval = _evaluate(eval_step, state, dataset, config, shard)
        writer.write(step, last_eval)
        progress.eval_line(step, last_eval)
      for cb in built.callbacks:
        cb.on_step(step)
      if progress.due():
        progress.report(step, float(m["train_loss"]) if not int(m["nonfinite"]) else None)
      if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
        flush(step)  # never checkpoint a state whose updates were not checked for non-finite values
        save(step)
    ckpt.wait_until_finished()
  except BaseException:
    try:
      ckpt.wait_until_finished()  # a save already under way completes: nothing is lost on a crash
    except Exception:  # pylint: disable=broad-except  (the original error is the one to report)
      pass
    raise

  if latest is not None and latest >= config.num_train_steps:
    if ctx.is_main:
      print(f"Run in {workdir} finished at step {latest} but its results are missing; recomputing them "
            f"from the checkpoint", flush=True)
    last_eval = _evaluate(eval_step, state, dataset, config, shard)
  final = {}
  for cb in built.callbacks:
    final.update({f"final_{k}": v for k, v in (cb.on_end() or {}).items()})
  wall = elapsed_before + time.monotonic() - t_start
  writer.flush()
  rows = metrics_io.read_metrics(workdir) if ctx.is_main else []
  results = {
      "steps": step,
      "train_loss": last_train.get("train_loss"),
      "train_accuracy": last_train.get("train_accuracy"),
      "eval_loss": last_eval.get("eval_loss"),
      "eval_accuracy": last_eval.get("eval_accuracy"),
      "skipped_updates": int(state.skipped),
      "wall_time_s": round(wall, 2),
      **final,
      "history": rows,  # every logged row: train metrics every log step, eval metrics every eval step
  }
  if ctx.is_main:
    metrics_io.plot_learning_curves(rows, workdir / CURVES_PNG, title=f"{config.model} on {config.dataset}")
    _write_json(workdir / RESULTS_JSON, results)
    table = metrics_io.results_table(results)
    (workdir / RESULTS_MD).write_text(table + "\n")
    print(f"\nResults ({workdir}):\n{table}", flush=True)
  ckpt.close()
  return results
