"""The slq fast path against the exact eigendecomposition, within its stated 0.05-bit error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.dynamics import diffusion_kernel, diffusion_spectral_entropy, spectral_entropy, spectral_entropy_slq

STATED_ERROR_BITS = 0.05  # the docstrings' stated error with the defaults


def _mixture(n, d, seed, clusters=6, spread=0.4):
  rng = np.random.default_rng(seed)
  centers = rng.standard_normal((clusters, d))
  return (centers[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d))).astype(np.float32)


def _low_rank_plus_noise(n, d, seed, rank=8):
  rng = np.random.default_rng(seed)
  signal = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) * (4 / np.sqrt(d))
  return (signal + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize(
    "data,sigma",
    [(_mixture(300, 64, 0), 3.0), (_low_rank_plus_noise(300, 128, 1), 4.0), (_mixture(300, 16, 2, spread=1.0), 1.0)],
)
def test_slq_within_stated_error_of_exact(data, sigma):
  exact = {t: float(diffusion_spectral_entropy(data, sigma=sigma, t=t)) for t in (1, 2)}
  assert exact[1] > 3.0  # non-trivial entropy, so the check has teeth
  for t in (1, 2):
    for seed in range(2):
      fast = float(diffusion_spectral_entropy(data, sigma=sigma, t=t, method="slq", key=jax.random.key(seed)))
      assert abs(fast - exact[t]) <= STATED_ERROR_BITS, (t, seed, fast, exact[t])


def test_slq_on_matrix_with_known_spectrum():
  # A PSD matrix with a diffusion-like spectrum: 1, a few large, a spread-out bulk.
  n = 300
  rng = np.random.default_rng(0)
  lam = np.concatenate([[1.0, 0.8, 0.6, 0.5], rng.uniform(0.001, 0.05, n - 4)])
  Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
  K = jnp.asarray((Q * lam) @ Q.T, jnp.float32)
  exact = float(spectral_entropy(lam))
  est = [float(spectral_entropy_slq(K, key=jax.random.key(s))) for s in range(3)]
  assert max(abs(e - exact) for e in est) <= STATED_ERROR_BITS, (est, exact)
  assert len(set(est)) == 3  # it is a random estimate: the key matters


def test_slq_exact_when_rank_below_deflation_rank():
  # Rank 5 < deflation rank: the head holds the whole spectrum and the tail is ~0.
  n = 300
  rng = np.random.default_rng(1)
  lam = np.array([1.0, 0.7, 0.4, 0.2, 0.1])
  Q = np.linalg.qr(rng.standard_normal((n, 5)))[0]
  K = jnp.asarray((Q * lam) @ Q.T, jnp.float32)
  for t in (1, 3):
    est = float(spectral_entropy_slq(K, t=t, key=jax.random.key(0), deflation_rank=16, lanczos_steps=10, head_blocks=2))
    assert est == pytest.approx(float(spectral_entropy(lam, t=t)), abs=1e-3)


def test_small_n_falls_back_to_exact():
  Z = _mixture(200, 8, 3)
  exact = float(diffusion_spectral_entropy(Z, sigma=2.0))
  fast = float(diffusion_spectral_entropy(Z, sigma=2.0, method="slq", key=jax.random.key(0)))
  assert fast == pytest.approx(exact, abs=1e-5)  # N = 200 <= 64 * 3 + 30


def test_slq_identical_points_zero():
  Z = np.ones((300, 4), np.float32)
  fast = float(diffusion_spectral_entropy(Z, method="slq", key=jax.random.key(0)))
  assert fast == pytest.approx(0.0, abs=1e-3)


def test_slq_validation():
  K = diffusion_kernel(np.zeros((5, 2), np.float32))
  with pytest.raises(ValueError, match=r"K: must be a square"):
    spectral_entropy_slq(K[:, :3], key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"num_probes: must be an int >= 1"):
    spectral_entropy_slq(K, key=jax.random.key(0), num_probes=0)
  with pytest.raises(ValueError, match=r"lanczos_steps: must be an int >= 2"):
    diffusion_spectral_entropy(np.zeros((5, 2)), method="slq", key=jax.random.key(0), lanczos_steps=1)
  with pytest.raises(ValueError, match=r"t: must be an int in \[1, 2147483647\]"):
    spectral_entropy_slq(K, t=0, key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"head_blocks: must be an int >= 1"):
    spectral_entropy_slq(K, key=jax.random.key(0), head_blocks=0)


def test_slq_defaults_agree_across_entry_points():
  import inspect

  from jaxdyn.dynamics._slq import DEFAULT_SLQ_OPTIONS

  for fn in (spectral_entropy_slq, diffusion_spectral_entropy):
    params = inspect.signature(fn).parameters
    assert {name: params[name].default for name in DEFAULT_SLQ_OPTIONS} == DEFAULT_SLQ_OPTIONS


# --- input policy: scale, half precision, large t, keys -----------------------------------------


def test_slq_any_kernel_scale():
  # The entropy does not depend on K's scale; K * 1e30 used to overflow (K^2 in the control
  # variates, the Gram matrices) and K * 1e-30 to underflow, both to NaN.
  K = diffusion_kernel(_mixture(300, 8, 4), sigma=2.0)
  key = jax.random.key(0)
  expected = float(spectral_entropy_slq(K, key=key))
  for c in (2.0**-100, 2.0**100, 1e-30, 1e30):
    assert float(spectral_entropy_slq(K * np.float32(c), key=key)) == pytest.approx(expected, abs=1e-4), c


def test_slq_half_precision_is_computed_in_float32():
  # LAPACK has no half-precision eigh (used to raise NotImplementedError).
  K16 = jnp.asarray(diffusion_kernel(_mixture(300, 8, 4), sigma=2.0), jnp.float16)
  key = jax.random.key(0)
  K32 = jnp.asarray(K16, jnp.float32)
  assert float(spectral_entropy_slq(K16, key=key)) == float(spectral_entropy_slq(K32, key=key))
  Z16 = jnp.asarray(_mixture(300, 8, 4), jnp.bfloat16)
  fast = float(diffusion_spectral_entropy(Z16, sigma=2.0, method="slq", key=key))
  assert fast == float(diffusion_spectral_entropy(jnp.asarray(Z16, jnp.float32), sigma=2.0, method="slq", key=key))


def test_slq_largest_t_keeps_only_the_top_eigenvalue():
  # |lambda|^t of eigenvalues a rounding away from 1 over- or underflowed at t = 2^31 - 1 (NaN).
  Z = _mixture(300, 8, 4)
  exact = float(diffusion_spectral_entropy(Z, sigma=2.0, t=2**31 - 1))
  fast = float(diffusion_spectral_entropy(Z, sigma=2.0, t=2**31 - 1, method="slq", key=jax.random.key(0)))
  assert exact == pytest.approx(0.0, abs=1e-9)
  assert fast == pytest.approx(exact, abs=STATED_ERROR_BITS)
  lam = np.array([300.0, 200.0, 1.0])  # and any scale: 300^20 overflows float32
  K = jnp.asarray(np.diag(lam), jnp.float32)
  assert float(spectral_entropy_slq(K, t=20, key=jax.random.key(0))) == pytest.approx(
      float(spectral_entropy(lam, t=20)), abs=1e-5)


def test_slq_key_is_named():
  K = diffusion_kernel(np.zeros((5, 2), np.float32))
  with pytest.raises(ValueError, match=r"key: a jax.random key is required"):
    spectral_entropy_slq(K, key=None)
  with pytest.raises(TypeError, match=r"key: must be a jax.random key"):
    spectral_entropy_slq(K, key=0)
