"""NUPES power quantization, its exponent search, the learned codes and the AdaRound baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.sparsity import _nupes as nupes
from jaxdyn.sparsity._nupes import (EXPONENTS, QuantizedTensor, adaround_layer, dequantize, inverse_power_transform,
                                    nupes_layer, power_transform, quantize_power, quantize_tree, quantize_uniform,
                                    search_exponent)


def _draw(seed, shape, df=None):
  """Random float32 arrays from NumPy (jax.random's Student-t sampler alone compiles for seconds)."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=shape) if df is None else rng.standard_t(df, size=shape), jnp.float32)


def _correlate(x, seed):
  """Features mixed by a random symmetric matrix with spectrum 2 * 0.8^k, as activations are: with
  independent features the output error is nearly the weights' own, which RTN already minimises."""
  d = x.shape[-1]
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  return x @ jnp.asarray(q * (2 * 0.8 ** np.arange(d)) @ q.T, jnp.float32)


# One Dense layer shape for every learned quantization below (one compilation each).
W = _draw(0, (32, 16)) / 4
X = _correlate(_draw(1, (128, 32)), 2)
HEAVY = _draw(2, (256, 16), df=2.0)  # Student-t, df = 2


def _bits(a):
  return np.asarray(a).view(np.uint32 if np.asarray(a).dtype == np.float32 else np.uint8)


def _output_error(w, x, qt):
  return float(jnp.sum((x @ w - x @ dequantize(qt)) ** 2) / jnp.sum((x @ w) ** 2))


def _numpy_rtn(w, bits):
  """Uniform symmetric round-to-nearest, written independently in NumPy (float32 throughout)."""
  w = np.asarray(w, np.float32)
  qmax = np.float32(2 ** (bits - 1) - 1)
  m = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
  s = np.where(m == 0, np.float32(1), m) / qmax
  v = np.clip(np.round(w / s), -qmax, qmax)  # np.round: ties to even, as jnp.round
  return v.astype(np.int8), s, v * s


# --- the automorphism and the quantizers ----------------------------------------------------------

def test_power_transform_and_its_inverse():
  w = jnp.array([-8.0, -0.25, 0.0, 0.5, 27.0])
  np.testing.assert_allclose(power_transform(w, 1 / 3), [-2.0, -0.25 ** (1 / 3), 0.0, 0.5 ** (1 / 3), 3.0], rtol=1e-6)
  for a in (0.3, 0.75, 1.5, 4.0):
    np.testing.assert_allclose(inverse_power_transform(power_transform(w, a), a), w, rtol=2e-6)
  assert power_transform(w, 1.0) is w and inverse_power_transform(w, 1) is w  # a = 1: no power at all
  traced = jax.jit(power_transform)(w, 1.0)
  np.testing.assert_array_equal(_bits(traced), _bits(w))
  np.testing.assert_array_equal(power_transform(-w, 0.7), -power_transform(w, 0.7))  # odd


def test_uniform_by_hand():
  qt = quantize_uniform(jnp.array([[0.25, -2.0], [-1.0, 0.5]]), 3)  # Q = 3; scales 1/3 and 2/3
  assert qt.values.tolist() == [[1, -3], [-3, 1]] and qt.bits == 3 and float(qt.exponent) == 1.0
  np.testing.assert_allclose(qt.scale, [1 / 3, 2 / 3], rtol=1e-7)
  np.testing.assert_allclose(dequantize(qt), [[1 / 3, -2.0], [-1.0, 2 / 3]], rtol=1e-6)
  ties = quantize_uniform(jnp.array([[0.5, 3.0], [1.5, 3.0], [3.0, 3.0]]), 3)  # w / s = 0.5, 1.5: to even
  assert ties.values[:, 0].tolist() == [0, 2, 3]
  zero = quantize_uniform(jnp.zeros((3, 2)), 4)  # an all-zero channel: scale 1 / Q, codes 0, weights 0
  assert zero.values.tolist() == [[0, 0]] * 3 and np.all(np.asarray(dequantize(zero)) == 0)


def test_exponent_one_is_uniform_rtn_bit_for_bit():
  every_bits = range(2, 9)
  for shape, seed in (((256, 16), 3), ((2, 3, 5, 6), 4)):  # shapes quantized elsewhere here too
    w = _draw(seed, shape, df=3.0)
    unis = [quantize_uniform(w, bits) for bits in every_bits]
    traced_a = jax.jit(lambda w, a: [quantize_power(w, bits, exponent=a) for bits in every_bits])(w, 1.0)
    traced_deq = jax.jit(lambda qts: [dequantize(qt) for qt in qts])(unis)  # a traced exponent of 1
    for i, bits in enumerate(every_bits):
      uni = unis[i]
      values, scale, deq = _numpy_rtn(w, bits)  # XLA rounds m / Q and w / s its own way: 1 ulp apart
      np.testing.assert_array_equal(uni.values, values)
      np.testing.assert_allclose(uni.scale, scale, rtol=2.5e-7, atol=0)
      np.testing.assert_allclose(dequantize(uni), deq, rtol=2.5e-7, atol=0)
      deq = dequantize(uni)
      for qt in (quantize_power(w, bits, exponent=1.0), traced_a[i]):  # a = 1 concrete, then traced
        np.testing.assert_array_equal(qt.values, uni.values)
        np.testing.assert_array_equal(_bits(qt.scale), _bits(uni.scale))
        np.testing.assert_array_equal(_bits(dequantize(qt)), _bits(deq))
      np.testing.assert_array_equal(_bits(traced_deq[i]), _bits(deq))


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_codes_are_int8_on_the_grid_and_within_half_a_step(bits):
  qmax = 2 ** (bits - 1) - 1
  for a in (0.4, 0.75, 1.0, 1.3):
    for w in (HEAVY, _draw(5, (2, 3, 5, 6))):
      qt = quantize_power(w, bits, exponent=a)
      v = np.asarray(qt.values)
      assert v.dtype == np.int8 and qt.values.shape == w.shape and qt.scale.shape == (w.shape[-1],)
      assert np.abs(v).max() <= qmax
      # The largest weight of each channel is a grid end: |v| = Q there, and it is reconstructed.
      flat_w, flat_v = np.asarray(w).reshape(-1, w.shape[-1]), v.reshape(-1, w.shape[-1])
      top = np.abs(flat_w).argmax(axis=0)
      np.testing.assert_array_equal(np.abs(flat_v[top, np.arange(w.shape[-1])]), qmax)
      # Half a grid step in the transformed space: |q_a(w / s) - q_a(w_hat / s)| <= 1/2.
      s = qt.scale
      gap = np.abs(power_transform(w / s, a) - power_transform(dequantize(qt) / s, a))
      assert gap.max() <= 0.5 + 1e-5 * qmax, (a, gap.max())


def test_a_smaller_exponent_refines_the_grid_near_zero():
  qt = quantize_power(jnp.array([[0.01, -1.0], [1.0, 0.36]]), 3, exponent=0.5)
  assert qt.values.tolist() == [[0, -3], [3, 2]]  # round(3 sqrt(|w| / max))
  np.testing.assert_allclose(dequantize(qt), [[0.0, -1.0], [1.0, 4 / 9]], rtol=1e-6)  # (2 / 3)^2
  levels = np.unique(np.abs(np.asarray(dequantize(quantize_power(jnp.linspace(-1, 1, 201)[:, None], 4,
                                                                  exponent=0.5)))))
  np.testing.assert_allclose(levels, (np.arange(8) / 7) ** 2, atol=1e-6)  # denser near 0


def test_quantized_tensor_is_a_pytree_with_static_bits():
  qt = quantize_power(W, 4, exponent=0.8)
  leaves, treedef = jax.tree.flatten(qt)
  assert len(leaves) == 3 and jax.tree.unflatten(treedef, leaves).bits == 4
  out = jax.jit(lambda q: q)(qt)
  assert isinstance(out, QuantizedTensor) and out.bits == 4 and out.values.dtype == jnp.int8
  np.testing.assert_array_equal(dequantize(out), dequantize(qt))


# --- the exponent search --------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [3, 4])
def test_search_picks_a_non_uniform_exponent_on_heavy_tails(bits):
  a, errors = search_exponent(HEAVY, bits)
  assert errors.shape == (len(EXPONENTS),) and float(a) in np.float32(EXPONENTS)
  assert float(a) < 1.0
  one = EXPONENTS.index(1.0)
  assert float(errors.min()) < 0.85 * float(errors[one])  # 0.79x at 3 bits (a = 0.55), 0.28x at 4 (a = 0.45)
  norm = float(jnp.sum(HEAVY ** 2))  # the errors are relative: ||w - w_hat||^2 / ||w||^2
  best = float(jnp.sum((HEAVY - dequantize(quantize_power(HEAVY, bits, exponent=a))) ** 2)) / norm
  rtn = float(jnp.sum((HEAVY - dequantize(quantize_uniform(HEAVY, bits))) ** 2)) / norm
  np.testing.assert_allclose([best, rtn], [errors.min(), errors[one]], rtol=1e-5)
  # On the layer's output, with calibration inputs: the picked exponent also beats a = 1 there.
  x = _draw(6, (64, 256))
  a_x, errors_x = search_exponent(HEAVY, bits, x=x)
  assert float(a_x) != 1.0 and float(errors_x.min()) < 0.8 * float(errors_x[one])  # 0.70x and 0.26x
  assert _output_error(HEAVY, x, quantize_power(HEAVY, bits, exponent=a_x)) < _output_error(
      HEAVY, x, quantize_uniform(HEAVY, bits))


def test_search_ties_go_to_the_exponent_closest_to_one():
  w = jnp.sign(HEAVY) * jnp.arange(1, 17.0)  # one magnitude per channel: every grid is exact
  a, errors = search_exponent(w, 3)
  assert float(a) == 1.0 and float(jnp.max(errors)) < 1e-12  # rounding noise only
  a, _ = search_exponent(w, 3, exponents=(0.5,) * 24 + (2.0, 0.9))
  assert float(a) == np.float32(0.9)


# --- learned quantization -------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [3, 4])
def test_nupes_lowers_the_output_error_below_rtn_and_its_initialisation(bits):
  qmax = 2 ** (bits - 1) - 1
  rtn = _output_error(W, X, quantize_uniform(W, bits))
  a0, _ = search_exponent(W, bits, x=X)
  init = _output_error(W, X, quantize_power(W, bits, exponent=a0))
  qt = nupes_layer(W, X, bits=bits)
  learned = _output_error(W, X, qt)
  assert init < 0.8 * rtn and learned < 0.5 * init, (learned, init, rtn)  # about 0.6x and 0.2-0.4x here
  assert qt.values.dtype == jnp.int8 and int(jnp.abs(qt.values).max()) <= qmax and qt.bits == bits
  a = float(qt.exponent)
  assert 0.1 <= a <= 10 and a != float(a0)  # the exponent was learned too
  np.testing.assert_allclose(qt.scale, jnp.max(jnp.abs(W), axis=0) / qmax ** (1 / a), rtol=1e-5)


def test_nupes_on_a_fixed_uniform_grid_keeps_it_bit_for_bit():
  qt = nupes_layer(W, X, bits=3, exponent=1.0, learn_exponent=False)
  uni = quantize_uniform(W, 3)
  assert float(qt.exponent) == 1.0
  np.testing.assert_array_equal(_bits(qt.scale), _bits(uni.scale))
  assert _output_error(W, X, qt) < 0.5 * _output_error(W, X, uni)  # codes learned on RTN's grid


@pytest.mark.parametrize("bits", [3, 4])
def test_adaround_beats_rtn_by_rounding_up_or_down(bits):
  uni = quantize_uniform(W, bits)
  qt = adaround_layer(W, X, bits=bits)
  assert float(qt.exponent) == 1.0 and qt.values.dtype == jnp.int8
  np.testing.assert_array_equal(_bits(qt.scale), _bits(uni.scale))
  scaled = W / qt.scale
  assert bool(jnp.all((qt.values == jnp.floor(scaled)) | (qt.values == jnp.floor(scaled) + 1)))
  assert _output_error(W, X, qt) < 0.5 * _output_error(W, X, uni)


def _conv(w, x):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_nupes_on_a_convolution_with_minibatches():
  w = _draw(7, (3, 3, 4, 8)) / 6
  x = _correlate(_draw(8, (16, 6, 6, 4)), 3)
  y = _conv(w, x)

  def err(qt):
    return float(jnp.sum((y - _conv(dequantize(qt), x)) ** 2) / jnp.sum(y ** 2))

  qt = nupes_layer(w, x, bits=4, apply=_conv, batch_size=8, key=jax.random.key(9), steps=150)
  again = nupes_layer(w, x, bits=4, apply=_conv, batch_size=8, key=jax.random.key(9), steps=150)
  np.testing.assert_array_equal(qt.values, again.values)  # the key fixes the minibatches
  assert qt.values.shape == w.shape and qt.scale.shape == (8,) and float(qt.exponent) != 1.0
  assert err(qt) < 0.92 * err(quantize_uniform(w, 4))  # about 0.87x here


# --- whole trees ----------------------------------------------------------------------------------

def test_quantize_tree_replaces_kernels_and_keeps_the_rest():
  conv = _draw(5, (2, 3, 5, 6))  # kernel shapes quantized elsewhere in this file: no new compilations
  params = {"dense": {"kernel": HEAVY, "bias": jnp.ones(16)}, "conv": {"kernel": conv},
            "seq": jnp.ones((2, 3, 4)), "count": jnp.array([[1, 2]])}
  deq, qts = quantize_tree(params, 4)
  assert set(qts) == {"['dense']['kernel']", "['conv']['kernel']"}
  assert jax.tree.structure(deq) == jax.tree.structure(params)
  assert deq["dense"]["bias"] is params["dense"]["bias"]
  assert deq["seq"] is params["seq"] and deq["count"] is params["count"]  # 3-D and integer leaves: kept
  np.testing.assert_array_equal(deq["dense"]["kernel"], dequantize(quantize_uniform(HEAVY, 4)))
  np.testing.assert_array_equal(deq["conv"]["kernel"], dequantize(quantize_uniform(conv, 4)))
  only_dense = lambda path, leaf: jax.tree_util.keystr(path) == "['dense']['kernel']"  # noqa: E731
  power, pqts = quantize_tree(params, 4, method="power", predicate=only_dense)  # exponent searched, data-free
  a, _ = search_exponent(HEAVY, 4)
  assert list(pqts) == ["['dense']['kernel']"] and power["conv"]["kernel"] is conv
  assert float(pqts["['dense']['kernel']"].exponent) == float(a) < 1
  np.testing.assert_array_equal(power["dense"]["kernel"], dequantize(quantize_power(HEAVY, 4, exponent=a)))
  fixed, fqts = quantize_tree(params, 4, method="power", exponent=0.75)
  assert set(fqts) == set(qts) and float(fqts["['conv']['kernel']"].exponent) == 0.75
  np.testing.assert_array_equal(fixed["conv"]["kernel"], dequantize(quantize_power(conv, 4, exponent=0.75)))


# --- the input policy -----------------------------------------------------------------------------

_K = jax.random.key(0)
BAD = [
    (lambda: quantize_uniform(W, 9), "bits", "bits: must be an int in [2, 8], got 9"),
    (lambda: quantize_uniform(W, 4.0), "bits", None),
    (lambda: quantize_uniform(W, True), "bits", None),
    (lambda: quantize_uniform(W[0], 4), "w", None),
    (lambda: quantize_power(W, 4, exponent=0.0), "exponent", None),
    (lambda: quantize_power(W, 4, exponent=float("nan")), "exponent", None),
    (lambda: quantize_power(W, 4, exponent=jnp.ones(2)), "exponent", None),
    (lambda: power_transform(W, 11.0), "exponent", None),
    (lambda: inverse_power_transform(W, False), "exponent", None),
    (lambda: dequantize(W), "qt", None),
    (lambda: search_exponent(W, 4, exponents=()), "exponents", None),
    (lambda: search_exponent(W, 4, exponents=(0.5, 20.0)), "exponents", None),
    (lambda: search_exponent(W, 4, exponents="abc"), "exponents", None),
    (lambda: search_exponent(W, 4, x=X[:, :5]), "x", None),
    (lambda: search_exponent(W, 4, x=X[:0]), "x", None),
    (lambda: search_exponent(W, 4, x=X, apply=3), "apply", None),
    (lambda: nupes_layer(W, None, bits=4), "x", None),
    (lambda: nupes_layer(W, X, bits=4, steps=0), "steps", None),
    (lambda: nupes_layer(W, X, bits=4, steps=2.0), "steps", None),
    (lambda: nupes_layer(W, X, bits=4, learning_rate=0.0), "learning_rate", None),
    (lambda: nupes_layer(W, X, bits=4, exponent_learning_rate=-1.0), "exponent_learning_rate", None),
    (lambda: nupes_layer(W, X, bits=4, damping=float("nan")), "damping", None),
    (lambda: nupes_layer(W, X, bits=4, exponent=0.05), "exponent", None),
    (lambda: nupes_layer(W, X, bits=4, learn_exponent="yes"), "learn_exponent", None),
    (lambda: nupes_layer(W, X, bits=4, batch_size=8), "key", None),
    (lambda: nupes_layer(W, X, bits=4, batch_size=8, key=0), "key", None),
    (lambda: nupes_layer(W, X, bits=4, batch_size=0, key=_K), "batch_size", None),
    (lambda: nupes_layer(W.reshape(4, 8, 16), X, bits=4), "apply", None),
    (lambda: nupes_layer(W, X.at[3, 1].set(jnp.nan), bits=4), "x", "x: must be finite, found nan at index (3, 1)"),
    (lambda: nupes_layer(W.at[0, 0].set(jnp.inf), X, bits=4), "w", None),
    (lambda: adaround_layer(W, X, bits=1), "bits", None),
    (lambda: adaround_layer(W, X, bits=4, regularization=-0.1), "regularization", None),
    (lambda: adaround_layer(W, X[:0], bits=4), "x", None),
    (lambda: adaround_layer(W, X, bits=4, batch_size=4, key="k"), "key", None),
    (lambda: quantize_tree({"k": W}, 4, method="gptq"), "method", None),
    (lambda: quantize_tree({"k": W}, 4, exponent=0.5), "exponent", None),
    (lambda: quantize_tree({"k": W}, 4, predicate="kernel"), "predicate", None),
    (lambda: quantize_tree({"k": W.at[1, 1].set(jnp.nan)}, 4), "params", None),
    (lambda: quantize_tree({"b": jnp.ones(3)}, 4, predicate=lambda p, x: True), "params", None),
]


@pytest.mark.parametrize("call,argument,message", BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_inputs_raise_naming_the_argument(call, argument, message):
  with pytest.raises((ValueError, TypeError)) as info:
    call()
  assert str(info.value).startswith(f"{argument}:"), str(info.value)
  if message is not None:
    assert str(info.value) == message


def test_numpy_scalars_are_numbers():
  ref = quantize_power(W, 4, exponent=0.75)
  for bits, a in ((np.int64(4), np.float32(0.75)), (np.asarray(4), np.asarray(0.75))):
    qt = quantize_power(W, bits, exponent=a)
    np.testing.assert_array_equal(qt.values, ref.values)
    np.testing.assert_allclose(qt.scale, ref.scale, rtol=1e-6)


def test_non_finite_weights_propagate_under_jit():
  # The quantizers are jitted computations: the eager calls run them as a user's jit would.
  bad = HEAVY.at[2, 5].set(jnp.nan)
  traced = jax.jit(lambda w, a: quantize_power(w, 4, exponent=a))(bad, 0.75)
  for qt in (quantize_uniform(bad, 4), quantize_power(bad, 4, exponent=0.75),
             quantize_uniform(HEAVY.at[0, 5].set(jnp.inf), 4), traced):
    scale = np.asarray(qt.scale)
    assert not np.isfinite(scale[5]) and np.isfinite(np.delete(scale, 5)).all()
    assert not np.isfinite(np.asarray(dequantize(qt))[:, 5]).any()
  a, errors = search_exponent(bad, 4)
  assert np.isnan(a) and np.isnan(errors).all()
  # The learned paths under jit (the eager wrappers raise instead): the same compiled program as
  # the eager calls above, so NaN inputs reach it as they would inside a user's jit.
  v, s, a = nupes._nupes(W, X.at[3, 1].set(jnp.nan), None, jnp.float32(1), jnp.asarray(True), 7, 200, 0.01, 0.01,
                         30.0, apply=nupes._dense, batch_size=None)
  assert np.isnan(s).all() and np.isnan(a)
  _, s = nupes._adaround(W, X.at[3, 1].set(jnp.inf), None, 7, 500, 0.01, 3.0, apply=nupes._dense, batch_size=None)
  assert np.isnan(s).all()
