"""Baseline losses against NumPy formulas: CE, label smoothing, focal, mixup CE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.calibration import cross_entropy_loss
from jaxdyn.calibration import focal_loss
from jaxdyn.calibration import label_smoothing_loss
from jaxdyn.calibration import mixup_cross_entropy_loss

Z = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0], [-2.0, 1.0, 1.0], [0.3, 0.2, 0.1]], np.float32)
Y = np.array([0, 2, 1, 2])


def _log_softmax(z):
  z = z.astype(np.float64) - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_cross_entropy_integer_and_soft_labels():
  want = -np.mean(_log_softmax(Z)[np.arange(4), Y])
  np.testing.assert_allclose(float(cross_entropy_loss(logits=Z, labels=Y)), want, rtol=1e-6)
  onehot = np.eye(3, dtype=np.float32)[Y]
  np.testing.assert_allclose(float(cross_entropy_loss(logits=Z, labels=onehot)), want, rtol=1e-6)
  soft = np.array([[0.5, 0.5, 0.0]] * 4, np.float32)
  want_soft = -np.mean((soft * _log_softmax(Z)).sum(-1))
  np.testing.assert_allclose(float(cross_entropy_loss(logits=Z, labels=soft)), want_soft,
                             rtol=1e-6)


def test_label_smoothing():
  eps = 0.2
  target = (1 - eps) * np.eye(3)[Y] + eps / 3
  want = -np.mean((target * _log_softmax(Z)).sum(-1))
  got = label_smoothing_loss(logits=Z, labels=Y, smoothing=eps)
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  np.testing.assert_allclose(float(label_smoothing_loss(logits=Z, labels=Y, smoothing=0.0)),
                             float(cross_entropy_loss(logits=Z, labels=Y)), rtol=1e-6)


def test_focal_loss():
  log_p = _log_softmax(Z)[np.arange(4), Y]
  for gamma in (3.0, 1.5):
    want = -np.mean((1 - np.exp(log_p)) ** gamma * log_p)
    got = focal_loss(logits=Z, labels=Y, gamma=gamma)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
  np.testing.assert_allclose(float(focal_loss(logits=Z, labels=Y, gamma=0.0)),
                             float(cross_entropy_loss(logits=Z, labels=Y)), rtol=1e-6)
  # Default gamma is 3.
  np.testing.assert_allclose(float(focal_loss(logits=Z, labels=Y)),
                             float(focal_loss(logits=Z, labels=Y, gamma=3.0)), rtol=0)
  # Finite gradient at p == 1 exactly with gamma < 1.
  g = jax.jit(jax.grad(lambda z: focal_loss(logits=z, labels=jnp.array([0]), gamma=0.5)))(
      jnp.array([[200.0, 0.0]]))
  assert np.all(np.isfinite(np.asarray(g)))


def test_mixup_cross_entropy_equals_lam_weighted_ce():
  lam = 0.3
  perm = np.array([2, 0, 3, 1])
  onehot = np.eye(3, dtype=np.float32)[Y]
  mixed = (lam * onehot + (1 - lam) * onehot[perm])[None]  # M = 1
  got = mixup_cross_entropy_loss(logits=Z[None], labels=mixed)
  want = (lam * cross_entropy_loss(logits=Z, labels=Y)
          + (1 - lam) * cross_entropy_loss(logits=Z, labels=Y[perm]))
  np.testing.assert_allclose(float(got), float(want), rtol=1e-6)


def test_validation():
  with pytest.raises(ValueError, match="labels"):
    cross_entropy_loss(logits=Z, labels=np.array([0, 1, 3, 0]))
  with pytest.raises(ValueError, match="labels"):
    cross_entropy_loss(logits=Z, labels=np.array([0, 1, -1, 0]))
  with pytest.raises(ValueError, match="labels"):
    cross_entropy_loss(logits=Z, labels=np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="labels"):
    cross_entropy_loss(logits=Z, labels=np.zeros((4, 2), np.float32))
  with pytest.raises(ValueError, match="smoothing"):
    label_smoothing_loss(logits=Z, labels=Y, smoothing=1.0)
  with pytest.raises(ValueError, match="smoothing"):
    label_smoothing_loss(logits=Z, labels=Y, smoothing=-0.1)
  with pytest.raises(ValueError, match="gamma"):
    focal_loss(logits=Z, labels=Y, gamma=-1.0)
  with pytest.raises(ValueError, match="labels"):
    mixup_cross_entropy_loss(logits=Z, labels=Y)


# --- Input policy ------------------------------------------------------------------------------

LOSSES = [cross_entropy_loss, label_smoothing_loss, focal_loss]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_give_nan(loss, bad):
  z = Z.copy()
  z[1, 0] = bad  # Off the label: a -inf there used to give a finite CE (a zero one-hot hid it).
  assert np.isnan(float(loss(logits=z, labels=Y)))
  assert np.isnan(float(jax.jit(lambda a: loss(logits=a, labels=Y))(z)))
  assert np.isnan(float(mixup_cross_entropy_loss(logits=z[None], labels=np.eye(3, dtype=np.float32)[Y][None])))


@pytest.mark.parametrize("loss", LOSSES)
def test_out_of_range_label_gives_nan_under_jit(loss):
  jitted = jax.jit(lambda y: loss(logits=Z, labels=y))
  np.testing.assert_allclose(float(jitted(Y)), float(loss(logits=Z, labels=Y)), rtol=1e-6)
  for bad in (-1, 3):  # a zero one-hot row used to drop the sample from the mean silently
    assert np.isnan(float(jitted(np.array([0, bad, 1, 2]))))


@pytest.mark.parametrize("loss", LOSSES + [mixup_cross_entropy_loss])
def test_empty_batch_is_rejected(loss):
  labels = np.zeros((0, 3), np.float32)
  with pytest.raises(ValueError, match="logits: must hold at least one of its examples"):
    loss(logits=np.zeros((0, 3), np.float32), labels=labels)  # used to be NaN
  with pytest.raises(ValueError, match="logits: must hold at least one of its examples"):
    loss(logits=np.zeros((2, 0, 3), np.float32), labels=labels.reshape(2, 0, 3))


def test_numpy_scalars_are_numbers():
  want = float(label_smoothing_loss(logits=Z, labels=Y, smoothing=0.2))
  for eps in (np.float32(0.2), np.float64(0.2), np.asarray(0.2, np.float32)):
    np.testing.assert_allclose(float(label_smoothing_loss(logits=Z, labels=Y, smoothing=eps)), want, rtol=1e-6)
  want = float(focal_loss(logits=Z, labels=Y, gamma=2.0))
  np.testing.assert_allclose(float(focal_loss(logits=Z, labels=Y, gamma=np.int64(2))), want, rtol=1e-6)
  with pytest.raises(ValueError, match=r"smoothing: must be a finite real number in \[0, 1\)"):
    label_smoothing_loss(logits=Z, labels=Y, smoothing=True)
