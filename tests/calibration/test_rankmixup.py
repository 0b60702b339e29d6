"""RankMixup losses (MRL, M-NDCG, total) against hand-worked examples and NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.calibration import cross_entropy_loss
from jaxdyn.calibration import mndcg_loss
from jaxdyn.calibration import mrl_loss
from jaxdyn.calibration import rankmixup_loss
from jaxdyn.calibration import sample_mixup

L2 = math.log2(3.0)  # log2(k + 1) for rank k = 2; ranks 1 and 3 give 1 and 2.


def _logits_from_probs(p):
  return jnp.log(jnp.asarray(p, jnp.float32))


# --- MRL -------------------------------------------------------------------------------------


def _mrl_example():
  z = jnp.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 0.5, 0.0]])
  z_mix = jnp.array([[[2.5, 0.0, 0.0], [0.0, 4.0, 0.0], [1.0, 0.0, 2.0], [0.0, 0.2, 0.0]]])
  # Pairs 0 and 2 are mixed; pair 1 is same-class (exact one-hot); pair 3 is lam = 1.
  y_mix = jnp.array([[[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.45, 0.0, 0.55], [1.0, 0.0, 0.0]]])
  return z, z_mix, y_mix


def test_mrl_paper_masked_mean_hand_worked():
  z, z_mix, y_mix = _mrl_example()
  # d = max z~ - max z = [-0.5, 3.0, -3.0, -0.8]; margin 1: hinge = [0.5, 4.0, 0.0, 0.2].
  # Valid pairs (no entry exactly 1.0): 0 and 2 -> (0.5 + 0.0) / 2.
  got = mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=1.0)
  np.testing.assert_allclose(float(got), 0.25, rtol=1e-6)
  # Margin 3: hinge = [2.5, 6.0, 0.0, 2.2] -> (2.5 + 0.0) / 2.
  got = mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=3.0)
  np.testing.assert_allclose(float(got), 1.25, rtol=1e-6)
  # A (B, K) mixed batch is read as M = 1.
  got2 = mrl_loss(logits=z, mixed_logits=z_mix[0], mixed_labels=y_mix[0], margin=3.0)
  np.testing.assert_allclose(float(got2), 1.25, rtol=1e-6)


def test_mrl_official_compat_hand_worked():
  z, z_mix, y_mix = _mrl_example()
  # mean(mask) * mean(hinge) = (2 / 4) * (0.5 + 4.0 + 0.0 + 0.2) / 4: masked pairs still count.
  got = mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=1.0,
                 official_compat=True)
  np.testing.assert_allclose(float(got), 0.5 * 4.7 / 4, rtol=1e-6)


def test_mrl_on_probabilities():
  z, z_mix, y_mix = _mrl_example()
  c = np.asarray(jax.nn.softmax(z)).max(-1)
  c_mix = np.asarray(jax.nn.softmax(z_mix[0])).max(-1)
  hinge = np.maximum(c_mix - c + 0.1, 0.0)
  want = (hinge[0] + hinge[2]) / 2
  got = mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=0.1, space="probs")
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_mrl_mask_from_sample_mixup_matches_same_class_pairs():
  labels = jnp.array([0, 0, 1, 1, 2, 0])
  mix = sample_mixup(jax.random.key(3), jnp.ones((6, 1)), jax.nn.one_hot(labels, 3),
                     num_mixes=3, alpha=1.0)
  rng = np.random.default_rng(4)
  z = rng.normal(size=(6, 3)).astype(np.float32)
  z_mix = rng.normal(size=(3, 6, 3)).astype(np.float32)
  y = np.asarray(labels)
  same = y[np.asarray(mix.perms)] == y[None]  # (M, B): pairs of one class
  valid = ~(same | np.isin(np.asarray(mix.lam), [0.0, 1.0])[:, None])
  assert valid.sum() > 0 and (~valid).sum() > 0
  hinge = np.maximum(np.asarray(z_mix).max(-1) - np.asarray(z).max(-1)[None] + 2.0, 0.0)
  got = mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=mix.labels, margin=2.0)
  np.testing.assert_allclose(float(got), hinge[valid].mean(), rtol=1e-5)
  got = mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=mix.labels, margin=2.0,
                 official_compat=True)
  np.testing.assert_allclose(float(got), valid.mean() * hinge.mean(), rtol=1e-5)


def test_mrl_all_pairs_masked_gives_zero():
  z = jnp.zeros((2, 2))
  y_mix = jnp.eye(2)[None]
  got = mrl_loss(logits=z, mixed_logits=jnp.ones((1, 2, 2)), mixed_labels=y_mix, margin=1.0)
  assert float(got) == 0.0


# --- M-NDCG ----------------------------------------------------------------------------------


def test_mndcg_hand_worked_orders_mixes_by_label():
  # One clean sample c = 0.9; three mixes with l = [0.6, 0.9, 0.75] and c~ = [0.5, 0.85, 0.7].
  # Sorted by l: mixes 2, 3, 1 -> r = [0.9, 0.85, 0.7, 0.5], g = [1, 0.9, 0.75, 0.6].
  z = _logits_from_probs([[0.9, 0.1]])
  z_mix = _logits_from_probs([[[0.5, 0.5]], [[0.85, 0.15]], [[0.7, 0.3]]])
  y_mix = jnp.array([[[0.6, 0.4]], [[0.1, 0.9]], [[0.75, 0.25]]])
  disc = np.array([1.0, 1.0 / L2, 0.5, 1.0 / math.log2(5.0)])
  dcg = np.dot([0.9, 0.85, 0.7, 0.5], disc)
  idcg = np.dot([1.0, 0.9, 0.75, 0.6], disc)
  assert idcg > dcg
  got = mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix)
  np.testing.assert_allclose(float(got), 1 - dcg / idcg, rtol=1e-5)
  # Permuting the mixes changes nothing (they are sorted by l) ...
  perm = jnp.array([2, 0, 1])
  got_p = mndcg_loss(logits=z, mixed_logits=z_mix[perm], mixed_labels=y_mix[perm])
  np.testing.assert_allclose(float(got_p), float(got), rtol=1e-6)
  # ... but pairing the confidences with other labels does: unsorted order would give this.
  dcg_unsorted = np.dot([0.9, 0.5, 0.85, 0.7], disc)
  assert abs(float(got) - (1 - dcg_unsorted / idcg)) > 1e-3


def test_mndcg_folds_the_ratio_when_overconfident():
  # DCG > IDCG: ndcg = IDCG / DCG.
  z = _logits_from_probs([[0.99, 0.01]])
  z_mix = _logits_from_probs([[[0.99, 0.01]], [[0.98, 0.02]]])
  y_mix = jnp.array([[[0.6, 0.4]], [[0.8, 0.2]]])
  disc = np.array([1.0, 1.0 / L2, 0.5])
  dcg = np.dot([0.99, 0.98, 0.99], disc)  # l sorted: mix 2 (0.8) then mix 1 (0.6).
  idcg = np.dot([1.0, 0.8, 0.6], disc)
  assert dcg > idcg
  got = mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix)
  np.testing.assert_allclose(float(got), 1 - idcg / dcg, rtol=1e-5)


def test_mndcg_ideal_gain_of_same_class_pair_is_one_and_perfect_ranking_is_zero():
  # Confidences equal to the ideal gains (same-class pair: l = 1; mix: l = 0.7) -> loss 0.
  z = _logits_from_probs([[1.0 - 1e-7, 1e-7]])
  z_mix = _logits_from_probs([[[0.7, 0.3]], [[1.0 - 1e-7, 1e-7]]])
  y_mix = jnp.array([[[0.7, 0.3]], [[1.0, 0.0]]])
  got = mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix)
  np.testing.assert_allclose(float(got), 0.0, atol=1e-6)


def test_mndcg_batch_matches_numpy_reference():
  b, m, k = 5, 3, 4
  rng = np.random.default_rng(0)
  z = rng.normal(size=(b, k)).astype(np.float32) * 2
  z_mix = rng.normal(size=(m, b, k)).astype(np.float32) * 2
  lam = np.array([0.3, 0.9, 0.55])
  pairs = np.array([[1, 2, 3, 4, 0], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])  # mix 2: self-pairs
  y = np.eye(k)[np.array([0, 1, 2, 3, 0])]
  y_mix = np.stack([lam[i] * y + (1 - lam[i]) * y[pairs[i]] for i in range(m)])
  y_mix[1] = y  # exact one-hot for self pairs
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  p_mix = np.exp(z_mix - z_mix.max(-1, keepdims=True))
  p_mix /= p_mix.sum(-1, keepdims=True)
  losses = []
  for i in range(b):
    l = y_mix[:, i].max(-1)
    order = sorted(range(m), key=lambda j: -l[j])
    r = [p[i].max()] + [p_mix[j, i].max() for j in order]
    g = [1.0] + [l[j] for j in order]
    disc = 1 / np.log2(np.arange(1, m + 2) + 1)
    dcg, idcg = np.dot(r, disc), np.dot(g, disc)
    losses.append(1 - (dcg / idcg if idcg > dcg else idcg / dcg))
  got = mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=jnp.asarray(y_mix, jnp.float32))
  np.testing.assert_allclose(float(got), np.mean(losses), rtol=1e-5)


# --- Total loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mndcg", "mrl"])
def test_rankmixup_is_ce_plus_alpha_rank_and_backprops_into_both_passes(method):
  labels = jnp.array([0, 1, 2, 1, 0, 2])
  mix = sample_mixup(jax.random.key(0), jnp.ones((6, 1)), jax.nn.one_hot(labels, 3),
                     num_mixes=3, alpha=2.0)
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  z_mix = jnp.asarray(rng.normal(size=(3, 6, 3)), jnp.float32)
  rank_fn = mndcg_loss if method == "mndcg" else mrl_loss
  rank_kw = {} if method == "mndcg" else {"margin": 3.0}

  def total(a, b):
    return rankmixup_loss(logits=a, labels=labels, mixed_logits=b, mixed_labels=mix.labels,
                          method=method, alpha=0.3, margin=3.0)

  def rank(a, b):
    return rank_fn(logits=a, mixed_logits=b, mixed_labels=mix.labels, **rank_kw)

  @jax.jit
  def everything(a, b):
    ce = cross_entropy_loss(logits=a, labels=labels)
    return total(a, b), ce, rank(a, b), jax.grad(rank, argnums=(0, 1))(a, b)

  got, ce, rank_value, (g_clean, g_mix) = everything(z, z_mix)
  np.testing.assert_allclose(float(got), float(ce + 0.3 * rank_value), rtol=1e-6)
  assert float(rank_value) > 0
  # Nothing is detached: the ranking loss has gradients in both the clean and the mixed logits.
  assert np.abs(np.asarray(g_clean)).sum() > 1e-4 and np.abs(np.asarray(g_mix)).sum() > 1e-4


# --- Validation ------------------------------------------------------------------------------


def _args():
  return dict(logits=jnp.zeros((2, 3)), labels=jnp.array([0, 1]),
              mixed_logits=jnp.zeros((1, 2, 3)), mixed_labels=jnp.full((1, 2, 3), 1 / 3))


@pytest.mark.parametrize("alpha", [0.0, -0.1])
def test_bad_alpha(alpha):
  with pytest.raises(ValueError, match="alpha"):
    rankmixup_loss(**_args(), alpha=alpha)


def test_bad_margin():
  with pytest.raises(ValueError, match="margin"):
    rankmixup_loss(**_args(), method="mrl", margin=-1.0)
  a = _args()
  del a["labels"]
  with pytest.raises(ValueError, match="margin"):
    mrl_loss(**a, margin=-0.5)


def test_bad_labels_method_and_shapes():
  with pytest.raises(ValueError, match="labels"):
    rankmixup_loss(**{**_args(), "labels": jnp.array([0, 3])})
  with pytest.raises(ValueError, match="labels"):
    rankmixup_loss(**{**_args(), "labels": jnp.array([-1, 0])})
  with pytest.raises(ValueError, match="method"):
    rankmixup_loss(**_args(), method="ndcg")
  with pytest.raises(ValueError, match="mixed_logits"):
    rankmixup_loss(**{**_args(), "mixed_logits": jnp.zeros((1, 3, 3))})
  with pytest.raises(ValueError, match="mixed_labels"):
    rankmixup_loss(**{**_args(), "mixed_labels": jnp.zeros((1, 2, 4))})
  a = _args()
  del a["labels"]
  with pytest.raises(ValueError, match="space"):
    mrl_loss(**a, space="confidence")


# --- M-NDCG per-sample values (reduction="none") ---------------------------------------------


def test_mndcg_reduction_none_hand_worked():
  # Two clean samples (axis 0 of logits), M = 2 mixes each.
  # Sample 0 (the docstring's): c = 0.9, c~ = [0.6, 0.8], l = [0.7, 0.9] -> order: mix 2, mix 1.
  # Sample 1: c = 0.99, c~ = [0.99, 0.98], l = [0.6, 0.8] -> order: mix 2, mix 1; DCG > IDCG folds.
  z = _logits_from_probs([[0.9, 0.1], [0.99, 0.01]])
  z_mix = _logits_from_probs([[[0.6, 0.4], [0.99, 0.01]], [[0.8, 0.2], [0.98, 0.02]]])
  y_mix = jnp.array([[[0.7, 0.3], [0.6, 0.4]], [[0.9, 0.1], [0.8, 0.2]]])
  disc = np.array([1.0, 1.0 / L2, 0.5])
  dcg0, idcg0 = np.dot([0.9, 0.8, 0.6], disc), np.dot([1.0, 0.9, 0.7], disc)
  dcg1, idcg1 = np.dot([0.99, 0.98, 0.99], disc), np.dot([1.0, 0.8, 0.6], disc)
  want = [1 - dcg0 / idcg0, 1 - idcg1 / dcg1]
  np.testing.assert_allclose(want[0], 0.1111, atol=1e-4)
  got = mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, reduction="none")
  assert got.shape == (2,)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
  mean = mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix)
  np.testing.assert_allclose(float(mean), np.mean(want), rtol=1e-5)
  with pytest.raises(ValueError, match="reduction: must be one of"):
    mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, reduction="sum")


# --- Input policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["logits", "mixed_logits", "mixed_labels"])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_ranking_losses_are_nan_for_non_finite_inputs(where, bad):
  z, z_mix, y_mix = (np.array(a, np.float32) for a in _mrl_example())
  args = {"logits": z, "mixed_logits": z_mix, "mixed_labels": y_mix}
  args[where][(0,) * args[where].ndim] = bad  # NaN mixed logits used to give an MRL of 0.0
  assert np.isnan(float(mrl_loss(**args, margin=1.0)))
  assert np.isnan(float(mrl_loss(**args, margin=1.0, official_compat=True)))
  assert np.isnan(np.asarray(mndcg_loss(**args, reduction="none"))).all()
  assert np.isnan(float(jax.jit(lambda a: mndcg_loss(**a))(args)))


def test_mrl_nan_in_a_masked_pair_is_not_hidden():
  z, z_mix, y_mix = (np.array(a, np.float32) for a in _mrl_example())
  z_mix[0, 1, 1] = np.nan  # pair 1 is same-class (masked): the mask used to drop the NaN
  np.testing.assert_allclose(float(mrl_loss(logits=z, mixed_logits=np.array(_mrl_example()[1]),
                                            mixed_labels=y_mix, margin=1.0)), 0.25, rtol=1e-6)
  assert np.isnan(float(mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=1.0)))


def test_empty_batch_and_no_mixes_are_rejected():
  a = _args()
  del a["labels"]
  with pytest.raises(ValueError, match="logits: must hold at least one of its examples"):
    mrl_loss(logits=jnp.zeros((0, 3)), mixed_logits=jnp.zeros((1, 0, 3)), mixed_labels=jnp.zeros((1, 0, 3)))
  with pytest.raises(ValueError, match="logits: must hold at least one of its examples"):
    mndcg_loss(logits=jnp.zeros((0, 3)), mixed_logits=jnp.zeros((2, 0, 3)), mixed_labels=jnp.zeros((2, 0, 3)))
  with pytest.raises(ValueError, match="mixed_logits: must hold at least one of its mixes"):
    mndcg_loss(logits=a["logits"], mixed_logits=jnp.zeros((0, 2, 3)), mixed_labels=jnp.zeros((0, 2, 3)))
  with pytest.raises(ValueError, match="logits: must hold at least one of its examples"):
    rankmixup_loss(logits=jnp.zeros((0, 3)), labels=jnp.zeros((0,), jnp.int32),
                   mixed_logits=jnp.zeros((1, 0, 3)), mixed_labels=jnp.zeros((1, 0, 3)))


def test_rankmixup_out_of_range_label_gives_nan_under_jit():
  a = _args()
  jitted = jax.jit(lambda y: rankmixup_loss(**{**a, "labels": y}))
  assert np.isfinite(float(jitted(a["labels"])))
  assert np.isnan(float(jitted(jnp.array([0, -1]))))  # -1 must not be the last class
  assert np.isnan(float(jitted(jnp.array([3, 0]))))


def test_numpy_scalars_are_numbers():
  z, z_mix, y_mix = _mrl_example()
  want = float(mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=1.0))
  for margin in (np.float32(1.0), np.int64(1), np.asarray(1.0)):
    np.testing.assert_allclose(float(mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=margin)),
                               want, rtol=1e-6)
  a = _args()
  np.testing.assert_allclose(float(rankmixup_loss(**a, alpha=np.float32(0.5))), float(rankmixup_loss(**a, alpha=0.5)),
                             rtol=1e-6)
