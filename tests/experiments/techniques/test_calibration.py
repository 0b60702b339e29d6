"""The calibration objectives equal direct computations with jaxdyn.calibration; the callback's metrics."""

import json
import pathlib
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import default
from experiments import registry
from experiments.techniques import calibration as cal
from experiments.train import train_and_evaluate
from jaxdyn import calibration as lib
from jaxdyn.models import MLP

B, D, K = 8, 6, 4


def _model(dropout_rate=0.0):
  return MLP(D, K, hidden=(16,), dropout_rate=dropout_rate, rngs=nnx.Rngs(params=0))


def _batch():
  x = jax.random.normal(jax.random.key(1), (B, D))
  y = jnp.array([0, 1, 2, 3, 0, 1, 1, 2], jnp.int32)  # repeated classes: some same-class pairs
  return {"x": x, "y": y}


KEY = jax.random.key(7)


def test_objectives_are_registered():
  for name in ("label_smoothing", "focal", "mixup", "rankmixup"):
    assert registry.get("objective", name) is getattr(cal, name)
  assert registry.get("callback", "calibration") is cal.CalibrationCallback


def test_label_smoothing_and_focal_equal_the_library_losses():
  model, batch = _model(0.3), _batch()
  logits = model(batch["x"], train=True, key=KEY)  # dropout on, from the step's key
  loss, aux = cal.label_smoothing(model, batch, key=KEY, smoothing=0.2)
  np.testing.assert_allclose(aux["logits"], logits, rtol=1e-6)
  np.testing.assert_allclose(loss, lib.label_smoothing_loss(logits=logits, labels=batch["y"], smoothing=0.2),
                             rtol=1e-6)
  loss, aux = cal.focal(model, batch, key=KEY, gamma=2.0)
  np.testing.assert_allclose(loss, lib.focal_loss(logits=logits, labels=batch["y"], gamma=2.0), rtol=1e-6)
  # And the closed form -(1 - p_y)^gamma log p_y, by hand.
  log_p = np.asarray(jax.nn.log_softmax(logits))[np.arange(B), np.asarray(batch["y"])]
  np.testing.assert_allclose(loss, np.mean(-(1 - np.exp(log_p)) ** 2 * log_p), rtol=1e-5)


def test_mixup_is_soft_label_ce_on_one_mixed_copy():
  model, batch = _model(0.3), _batch()
  loss, aux = cal.mixup(model, batch, key=KEY, mixup_alpha=0.7)
  key_mix, key_drop = jax.random.split(KEY)
  mix = lib.sample_mixup(key_mix, batch["x"], jax.nn.one_hot(batch["y"], K), num_mixes=1, alpha=0.7)
  mixed_logits = model(mix.inputs[0], train=True, key=key_drop)
  np.testing.assert_allclose(
      loss, lib.mixup_cross_entropy_loss(logits=mixed_logits, labels=mix.labels[0]), rtol=1e-6)
  # lam CE(z~, y) + (1 - lam) CE(z~, y[pi]), by hand.
  lam, perm = float(mix.lam[0]), np.asarray(mix.perms[0])
  log_p = np.asarray(jax.nn.log_softmax(mixed_logits))
  y = np.asarray(batch["y"])
  by_hand = -np.mean(lam * log_p[np.arange(B), y] + (1 - lam) * log_p[np.arange(B), y[perm]])
  np.testing.assert_allclose(loss, by_hand, rtol=1e-5)
  np.testing.assert_allclose(aux["logits"], model(batch["x"], train=False), rtol=1e-6)  # clean, no dropout


@pytest.mark.parametrize("method,num_mixes,official", [("mrl", 1, False), ("mrl", 1, True),
                                                       ("mndcg", 3, False)])
def test_rankmixup_equals_rankmixup_loss_on_per_copy_forwards(method, num_mixes, official):
  model, batch = _model(), _batch()
  kw = dict(method=method, alpha=0.3, margin=1.5, official_compat=official)
  loss, aux = cal.rankmixup(model, batch, key=KEY, mixup_alpha=2.0, num_mixes=num_mixes, **kw)
  key_mix, _, _ = jax.random.split(KEY, 3)
  mix = lib.sample_mixup(key_mix, batch["x"], jax.nn.one_hot(batch["y"], K), num_mixes=num_mixes,
                         alpha=2.0)
  logits = model(batch["x"])
  # One forward per copy: the batched (M * B) forward must give the same (M, B, K) logits.
  mixed_logits = jnp.stack([model(mix.inputs[m]) for m in range(num_mixes)])
  expected = lib.rankmixup_loss(logits=logits, labels=batch["y"], mixed_logits=mixed_logits,
                                mixed_labels=mix.labels, **kw)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(aux["logits"], logits, rtol=1e-6)
  ce = lib.cross_entropy_loss(logits=logits, labels=batch["y"])
  np.testing.assert_allclose(aux["ce_loss"], ce, rtol=1e-5)
  np.testing.assert_allclose(aux["ce_loss"] + 0.3 * aux["rank_loss"], loss, rtol=1e-6)
  assert float(aux["rank_loss"]) > 0


def test_rankmixup_default_num_mixes_follows_the_paper():
  model, batch = _model(), _batch()
  for method, m in (("mrl", 1), ("mndcg", 3)):
    default_loss, _ = cal.rankmixup(model, batch, key=KEY, method=method)
    explicit, _ = cal.rankmixup(model, batch, key=KEY, method=method, num_mixes=m)
    assert float(default_loss) == float(explicit)
  with pytest.raises(ValueError, match="method"):
    cal.rankmixup(model, batch, key=KEY, method="ndcg")


@pytest.mark.parametrize("method", ["mrl", "mndcg"])
def test_rankmixup_gradient_flows_through_both_forward_passes(method):
  model, batch = _model(), _batch()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  num_mixes = 1 if method == "mrl" else 3
  mix = lib.sample_mixup(jax.random.split(KEY, 3)[0], batch["x"], jax.nn.one_hot(batch["y"], K),
                         num_mixes=num_mixes, alpha=2.0)

  def objective_loss(p):  # as the harness's train step calls it
    return cal.rankmixup(nnx.merge(graphdef, p, rest, copy=True), batch, key=KEY, method=method,
                         alpha=0.1, mixup_alpha=2.0)[0]

  def split_loss(p_clean, p_mixed, *, with_ce=True):  # the clean pass and the mixed pass apart
    z = nnx.merge(graphdef, p_clean, rest, copy=True)(batch["x"])
    flat = mix.inputs.reshape(num_mixes * B, D)
    z_mix = nnx.merge(graphdef, p_mixed, rest, copy=True)(flat).reshape(num_mixes, B, K)
    total = lib.rankmixup_loss(logits=z, labels=batch["y"], mixed_logits=z_mix,
                               mixed_labels=mix.labels, method=method, alpha=0.1)
    return total if with_ce else total - lib.cross_entropy_loss(logits=z, labels=batch["y"])

  g = jax.grad(objective_loss)(params)
  g_clean, g_mixed = jax.grad(split_loss, argnums=(0, 1))(params, params)
  jax.tree.map(lambda a, b, c: np.testing.assert_allclose(a, b + c, rtol=1e-4, atol=1e-7),
               g, g_clean, g_mixed)
  norm = lambda t: float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(t))))
  # The ranking term alone reaches the parameters through the mixed pass and through the clean pass.
  assert norm(g_mixed) > 1e-6
  rank_clean = jax.grad(lambda p: split_loss(p, params, with_ce=False))(params)
  assert norm(rank_clean) > 1e-6


class _Writer:

  def __init__(self):
    self.rows = []

  def write(self, step, metrics):
    self.rows.append((step, metrics))


def _fake_ctx(tmp_path, logits, labels, train_logits=None, train_labels=None):
  config = ml_collections.ConfigDict({"objective": "rankmixup", "objective_kwargs": {"method": "mrl"},
                                      "model": "mlp", "dataset": "synthetic"})
  outputs = {"eval": (logits, None, labels), "train": (train_logits, None, train_labels)}
  return types.SimpleNamespace(
      config=config, workdir=pathlib.Path(tmp_path), is_main=True, writer=_Writer(), label="rankmixup[method=mrl]",
      state=types.SimpleNamespace(step=jnp.int32(5)),
      eval_outputs=lambda split="eval", batch_size=None: outputs[split])


def _random_outputs(n, seed, true_temperature=3.0):
  """Logits whose labels are drawn from softmax(logits / 3): overconfident by a factor 3."""
  rng = np.random.default_rng(seed)
  logits = (4.0 * rng.normal(size=(n, K))).astype(np.float32)
  probs = np.asarray(jax.nn.softmax(logits / true_temperature))
  labels = np.array([rng.choice(K, p=p / p.sum()) for p in probs], np.int32)
  return logits, labels


def test_callback_metrics_equal_the_library_and_crossfit_temperature(tmp_path):
  logits, labels = _random_outputs(400, 0)
  cb = cal.CalibrationCallback(num_bins=10)
  cb.setup(_fake_ctx(tmp_path, logits, labels))
  out = cb.on_end()
  expected = lib.calibration_metrics(logits, labels, num_bins=10)
  assert set(out) == {*expected, "ece_ts", "temperature"}
  for k, v in expected.items():
    assert out[k] == pytest.approx(float(v), rel=1e-6)
  even, odd = np.arange(400) % 2 == 0, np.arange(400) % 2 == 1
  t_even, t_odd = lib.fit_temperature(logits[even], labels[even]), lib.fit_temperature(logits[odd], labels[odd])
  scaled = np.empty_like(logits)
  scaled[odd], scaled[even] = logits[odd] / float(t_even), logits[even] / float(t_odd)
  assert out["ece_ts"] == pytest.approx(float(lib.expected_calibration_error(scaled, labels, num_bins=10)),
                                        rel=1e-5)
  assert out["temperature"] == pytest.approx((float(t_even) + float(t_odd)) / 2, rel=1e-6)
  # Labels drawn at temperature 3: the fit recovers it roughly and the scaled logits are calibrated.
  assert 2.0 < out["temperature"] < 4.5 and out["ece_ts"] < 0.5 * out["ece"]
  assert (tmp_path / cal.RELIABILITY_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_callback_train_tail_temperature(tmp_path):
  logits, labels = _random_outputs(60, 1)
  tr_logits, tr_labels = _random_outputs(400, 2)
  ctx = _fake_ctx(tmp_path, logits, labels, tr_logits, tr_labels)
  cb = cal.CalibrationCallback(temperature_source="train_tail", temperature_fraction=0.1)
  cb.setup(ctx)
  out = cb.on_end()
  t = lib.fit_temperature(tr_logits[-40:], tr_labels[-40:])  # the last 10% of the train split
  assert out["temperature"] == pytest.approx(float(t), rel=1e-6)
  assert out["ece_ts"] == pytest.approx(float(lib.expected_calibration_error(logits / float(t), labels)),
                                        rel=1e-5)


def test_callback_rejects_bad_arguments():
  for kwargs, name in (({"num_bins": 0}, "num_bins"), ({"temperature_source": "val"}, "temperature_source"),
                       ({"temperature_fraction": 0.0}, "temperature_fraction")):
    with pytest.raises(ValueError, match=f"^{name}: "):
      cal.CalibrationCallback(**kwargs)


def test_callback_in_a_training_run(tmp_path):
  c = default.get_config()
  c.dataset = "synthetic"
  c.model = "mlp"
  c.model_kwargs = {"hidden": (16,), "dropout_rate": 0.0}
  c.objective = "focal"  # rankmixup in the harness: tests/experiments/test_configs.py
  c.objective_kwargs = {"gamma": 3.0}
  c.batch_size = 32
  c.num_train_steps = 4
  c.log_every_steps = 2
  c.eval_every_steps = c.checkpoint_every_steps = 4
  c.callbacks = ({"name": "calibration", "every_steps": 2},)
  res = train_and_evaluate(c, str(tmp_path))
  for k in ("ece", "adaptive_ece", "classwise_ece", "nll", "brier", "accuracy", "ece_ts", "temperature"):
    assert np.isfinite(res[f"final_{k}"])
  assert res["final_accuracy"] == pytest.approx(res["eval_accuracy"], abs=1e-6)
  assert res["final_nll"] == pytest.approx(res["eval_loss"], rel=1e-4)
  assert (tmp_path / cal.RELIABILITY_PNG).stat().st_size > 0
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged if "eval_ece" in r] == [2, 4]


def test_callback_on_a_diverged_model_reports_nan_and_draws_nothing(tmp_path):
  logits, labels = _random_outputs(50, 3)
  logits[4, 1] = np.nan
  cb = cal.CalibrationCallback()
  cb.setup(_fake_ctx(tmp_path, logits, labels))
  with pytest.warns(RuntimeWarning, match="not finite"):
    out = cb.on_end()
  assert np.isnan(out["ece"]) and np.isnan(out["ece_ts"]) and np.isnan(out["temperature"])
  assert not (tmp_path / cal.RELIABILITY_PNG).exists()
