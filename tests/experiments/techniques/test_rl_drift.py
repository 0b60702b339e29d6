"""The probe-drift callback records a classifier's probe choices per checkpoint and reduces them by value_drift."""

import json
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import default
from experiments import registry
from experiments.techniques.rl import drift as rl_drift
from experiments.train import train_and_evaluate
from jaxdyn.data import ArraySource
from jaxdyn.models import MLP

D, K, N = 6, 3, 10


class _Writer:

  def __init__(self):
    self.rows = []

  def write(self, step, metrics):
    self.rows.append((step, metrics))


def _split(seed):
  return nnx.split(MLP(D, K, hidden=(8,), rngs=nnx.Rngs(params=seed)), nnx.Param, ...)


def _ctx(tmp_path, step, seed):
  graphdef, params, rest = _split(seed)
  x = np.asarray(jax.random.normal(jax.random.key(3), (N, D)), np.float32)
  return types.SimpleNamespace(
      workdir=pathlib.Path(tmp_path), is_main=True, writer=_Writer(), graphdef=graphdef,
      dataset=types.SimpleNamespace(eval=ArraySource(x, np.arange(N, dtype=np.int32) % K)),
      state=types.SimpleNamespace(step=jnp.int32(step), params=params, rest=rest)), x


def _probs(seed, x):
  graphdef, params, rest = _split(seed)
  return np.asarray(jax.nn.softmax(nnx.merge(graphdef, params, rest)(jnp.asarray(x), train=False)), np.float64)


def test_registered():
  assert registry.get("callback", "probe_drift") is rl_drift.ProbeDrift


def test_records_and_metrics_against_a_hand_computation(tmp_path):
  ctx, x = _ctx(tmp_path, 0, seed=0)
  cb = rl_drift.ProbeDrift(every_steps=2, num_probes=4)
  cb.setup(ctx)  # records step 0
  seeds = {2: 1, 4: 1, 6: 2}  # a move, no move, a move
  for step in range(1, 7):
    if step in seeds:
      ctx.state = types.SimpleNamespace(step=jnp.int32(step), params=_split(seeds[step])[1], rest=ctx.state.rest)
    ctx.state = types.SimpleNamespace(step=jnp.int32(step), params=ctx.state.params, rest=ctx.state.rest)
    cb.on_step(step)
  out = cb.on_end()
  p = [_probs(s, x[:4]) for s in (0, 1, 1, 2)]
  d = [0.5 * np.abs(b - a).sum(-1).mean() for a, b in zip(p[:-1], p[1:])]
  assert cb.steps == [0, 2, 4, 6]
  np.testing.assert_allclose(cb.probs[3], p[3], atol=1e-6)
  assert out["value_drift_records"] == 4
  assert out["value_drift_total"] == pytest.approx(sum(d), rel=1e-5)
  assert out["value_drift_net"] == pytest.approx(0.5 * np.abs(p[3] - p[0]).sum(-1).mean(), rel=1e-5)
  cum = np.cumsum(d) / sum(d)
  assert out["value_drift_step_50"] == [2, 4, 6][int(np.argmax(cum >= 0.5))]
  assert out["value_drift_step_90"] == [2, 4, 6][int(np.argmax(cum >= 0.9 - 1e-6))]
  logged = [(s, m["probe_drift_interval"]) for s, m in ctx.writer.rows if "probe_drift_interval" in m]
  assert [s for s, _ in logged] == [2, 4, 6]
  np.testing.assert_allclose([v for _, v in logged], d, rtol=1e-5)
  assert ctx.writer.rows[-1] == (6, out)
  # the file holds every record; a run resumed at step 4 keeps steps 0..4 and records nothing new there
  assert [json.loads(r)["step"] for r in (tmp_path / rl_drift.PROBE_FILE).read_text().splitlines()] == [0, 2, 4, 6]
  ctx2, _ = _ctx(tmp_path, 4, seed=1)
  cb2 = rl_drift.ProbeDrift(every_steps=2, num_probes=4)
  cb2.setup(ctx2)
  assert cb2.steps == [0, 2, 4]
  np.testing.assert_allclose(cb2.probs[0], p[0], atol=1e-6)
  assert [json.loads(r)["step"] for r in (tmp_path / rl_drift.PROBE_FILE).read_text().splitlines()] == [0, 2, 4]


def test_no_drift_and_bad_arguments(tmp_path):
  ctx, _ = _ctx(tmp_path, 0, seed=0)
  cb = rl_drift.ProbeDrift(every_steps=1, num_probes=N)
  cb.setup(ctx)
  ctx.state = types.SimpleNamespace(step=jnp.int32(1), params=ctx.state.params, rest=ctx.state.rest)
  out = cb.on_end()
  assert out["value_drift_total"] == 0.0 and out["value_drift_step_50"] == 0 and out["value_drift_records"] == 2
  with pytest.raises(ValueError, match="num_probes"):
    rl_drift.ProbeDrift(num_probes=0)
  with pytest.raises(TypeError, match="num_probes"):
    rl_drift.ProbeDrift(num_probes=True)
  with pytest.raises(ValueError, match="every_steps"):
    rl_drift.ProbeDrift(every_steps=0)
  with pytest.raises(ValueError, match="num_probes: must be at most the eval split's size 10"):
    rl_drift.ProbeDrift(num_probes=N + 1).setup(_ctx(tmp_path, 0, seed=0)[0])


def test_in_a_training_run(tmp_path):
  c = default.get_config()
  c.dataset = "synthetic"
  c.model = "mlp"
  c.model_kwargs = {"hidden": (16,), "dropout_rate": 0.0}
  c.batch_size = 32
  c.num_train_steps = 4
  c.log_every_steps = 2
  c.eval_every_steps = c.checkpoint_every_steps = 4
  c.callbacks = ({"name": "probe_drift", "every_steps": 2, "num_probes": 8},)
  res = train_and_evaluate(c, str(tmp_path))
  assert res["final_value_drift_records"] == 3  # steps 0, 2, 4
  assert res["final_value_drift_total"] > 0
  assert res["final_value_drift_net"] <= res["final_value_drift_total"] + 1e-6
  assert res["final_value_drift_step_50"] in (2, 4) and res["final_value_drift_step_90"] in (2, 4)
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged if "probe_drift_interval" in r] == [2, 4]
