"""Delta activation layers: the quantizer and its custom gradients, the loss, the metric, delta inference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import schemes

# A hand-worked example: batch 1, time 2, channels 2; steps 0.5 and 0.4 (no value on a rounding tie).
X = jnp.array([[[0.3, 1.3], [0.8, -0.5]]])
THETA = jnp.array([0.5, 0.4])
# x / theta = [[0.6, 3.25], [1.6, -1.25]] -> levels [[1, 3], [2, -1]] -> q = levels * theta.
LEVELS = np.array([[[1.0, 3.0], [2.0, -1.0]]])
Q = np.array([[[0.5, 1.2], [1.0, -0.4]]])
W = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])  # the upstream gradient dy of L = sum(W * q)


def test_quantize_hand_worked():
  np.testing.assert_allclose(schemes.delta_quantize(X, THETA), Q, rtol=1e-6)


def test_custom_gradients_hand_worked():
  gx, gt = jax.grad(lambda x, t: jnp.sum(W * schemes.delta_quantize(x, t)), argnums=(0, 1))(X, THETA)
  np.testing.assert_array_equal(gx, W)  # straight through
  # dL/dtheta_c = -sum_{b,t} round(x / theta_c) dy: channel 0 -(1*1 + 2*3) = -7; channel 1 -(3*2 + (-1)*4) = -2.
  np.testing.assert_allclose(gt, [-7.0, -2.0], rtol=1e-6)


def test_threshold_gradient_is_summed_per_channel_over_batch_time_and_space():
  kx, kt, ky = jax.random.split(jax.random.key(0), 3)
  x = jax.nn.relu(jax.random.normal(kx, (3, 4, 2, 5)))  # (batch, time, space, channels)
  dy = jax.random.normal(ky, x.shape)
  per_channel = jax.random.uniform(kt, (5,), minval=0.1, maxval=0.6)
  levels = np.round(np.asarray(x, np.float64) / np.asarray(per_channel, np.float64))
  for theta, axes in [(per_channel, (0, 1, 2)), (jnp.tile(per_channel, (2, 1)), (0, 1)), (jnp.float32(0.3), None)]:
    g = jax.grad(lambda t, theta=theta: jnp.sum(dy * schemes.delta_quantize(x, t)))(theta)
    lv = levels if axes is not None else np.round(np.asarray(x, np.float64) / 0.3)
    expected = -(lv * np.asarray(dy)).sum(axis=axes)
    assert g.shape == jnp.shape(theta)
    np.testing.assert_allclose(g, np.broadcast_to(expected, g.shape), rtol=1e-5, atol=1e-5)


def test_quantization_error_is_at_most_half_a_step():
  kx, kt = jax.random.split(jax.random.key(1))
  x = 3.0 * jax.random.normal(kx, (4, 6, 3, 8))
  theta = jax.random.uniform(kt, (8,), minval=0.05, maxval=2.0)
  q = schemes.delta_quantize(x, theta)
  err = np.abs(np.asarray(q) - np.asarray(x))
  assert np.all(err <= np.asarray(theta) / 2 * (1 + 1e-6) + 1e-7)
  # q sits on the grid: q / theta is an integer.
  np.testing.assert_allclose(np.asarray(q) / np.asarray(theta), np.round(np.asarray(q) / np.asarray(theta)),
                             atol=1e-4)


@pytest.mark.parametrize("step", [0.25, 0.5])  # power-of-two steps: every delta and partial sum is exact
def test_cumulative_sum_of_deltas_reconstructs_the_quantized_activations_exactly(step):
  x = jax.nn.relu(jax.random.normal(jax.random.key(2), (3, 10, 4)))
  q = schemes.delta_quantize(x, jnp.full((4,), step))
  d = schemes.delta_encode(q)
  np.testing.assert_array_equal(d[:, 0], q[:, 0])  # the first frame against a blank one
  np.testing.assert_array_equal(d[:, 1:], np.diff(np.asarray(q), axis=1))
  np.testing.assert_array_equal(schemes.delta_decode(d), q)


def test_delta_inference_reconstructs_up_to_rounding_for_any_step():
  x = jax.nn.relu(jax.random.normal(jax.random.key(3), (2, 16, 3)))
  q = schemes.delta_quantize(x, jnp.array([0.1, 0.3, 0.07]))
  np.testing.assert_allclose(schemes.delta_decode(schemes.delta_encode(q)), q, atol=1e-6)


def test_sparsity_loss_and_its_gradient_hand_worked():
  q = schemes.delta_quantize(X, THETA)
  # transitions: (1.0 - 0.5, -0.4 - 1.2) = (0.5, -1.6); mean |.| = 1.05; times 0.1 * 3.
  loss = schemes.temporal_sparsity_loss(q, sp_rate=0.1, fan_out=3.0)
  np.testing.assert_allclose(loss, 0.315, rtol=1e-6)
  # dL/dq = +-0.15 (c / n = 0.3 / 2), signs of the transitions: channel 0 (-0.15, +0.15), channel 1 (+0.15, -0.15).
  # dL/dtheta = -sum levels * dL/dq: channel 0 -(1 * -0.15 + 2 * 0.15) = -0.15; channel 1 -(3 * 0.15 + -1 * -0.15)
  # = -0.6: negative, so gradient descent *grows* the steps (the negation's purpose: fewer nonzero deltas).
  gx, gt = jax.grad(lambda x, t: schemes.temporal_sparsity_loss(schemes.delta_quantize(x, t), sp_rate=0.1,
                                                                  fan_out=3.0), argnums=(0, 1))(X, THETA)
  np.testing.assert_allclose(gx, [[[-0.15, 0.15], [0.15, -0.15]]], rtol=1e-5)
  np.testing.assert_allclose(gt, [-0.15, -0.6], rtol=1e-5)


def test_sparsity_loss_is_the_mean_over_the_transitions_only():
  q = jnp.array([[[1.0], [1.0], [3.0]], [[0.0], [2.0], [2.0]]])  # |deltas| 0, 2 and 2, 0: mean 1
  assert float(schemes.temporal_sparsity_loss(q)) == 1.0
  assert float(schemes.temporal_sparsity_loss(q, sp_rate=0.0, fan_out=9.0)) == 0.0
  with pytest.raises(ValueError, match="q: has no transitions"):
    schemes.temporal_sparsity_loss(jnp.ones((2, 1, 3)))


def test_nonzero_delta_count_and_sparsity_hand_worked():
  q = jnp.array([[[0.0, 1.0], [0.0, 1.0], [0.5, 1.0]],
                 [[2.0, 0.0], [2.0, 0.0], [2.0, 0.5]]])  # (2, 3, 2): 8 transitions, 2 nonzero
  assert float(schemes.count_nonzero_deltas(q)) == 2.0
  np.testing.assert_allclose(schemes.delta_sparsity(q), 6 / 8)
  # With the first frame against a blank one: 12 deltas, the first frames add 1.0, 2.0 (two nonzero entries).
  assert float(schemes.count_nonzero_deltas(q, include_first=True)) == 4.0
  np.testing.assert_allclose(schemes.delta_sparsity(q, include_first=True), 8 / 12)
  np.testing.assert_allclose(schemes.delta_sparsity(jnp.ones((3, 5, 2))), 1.0)


def test_quantization_creates_zero_deltas_a_relu_would_not():
  # A slowly varying signal: its exact deltas are all nonzero, quantized ones mostly zero.
  t = jnp.linspace(0.0, 1.0, 50)
  x = (1.0 + 0.5 * jnp.sin(2 * jnp.pi * t))[None, :, None]
  assert float(schemes.delta_sparsity(jax.nn.relu(x))) == 0.0
  q = schemes.delta_quantize(x, jnp.array([0.25]))
  nonzero = float(schemes.count_nonzero_deltas(q))
  # 0.5 + 0.5 sin covers levels 2..6 of step 0.25 (0.5 .. 1.5): up 4 steps, down 8, up 4 at most.
  assert 0 < nonzero <= 16


def test_metric_and_loss_propagate_non_finite_values():
  q = np.ones((2, 4, 3), np.float32)
  q[1, 2, 0] = np.nan
  assert np.isnan(float(schemes.count_nonzero_deltas(q)))
  assert np.isnan(float(schemes.delta_sparsity(q)))
  assert np.isnan(float(schemes.temporal_sparsity_loss(q)))
  x = np.ones((1, 2, 2), np.float32)
  x[0, 0, 1] = np.inf
  assert not np.all(np.isfinite(schemes.delta_quantize(x, jnp.array([0.5, 0.5]))))
  assert np.isnan(float(jax.jit(schemes.count_nonzero_deltas)(q)))


def test_layer_uses_the_absolute_threshold_and_returns_q():
  layer = schemes.DeltaActivation(2, sp_rate=0.1, fan_out=3.0, threshold_init=0.5)
  np.testing.assert_array_equal(layer.threshold[...], [0.5, 0.5])
  layer.threshold[...] = jnp.array([-0.5, 0.4])  # the step is |threshold|
  np.testing.assert_allclose(layer(X), Q, rtol=1e-6)
  np.testing.assert_allclose(layer.sparsity_loss(layer(X)), 0.315, rtol=1e-6)

  graphdef, params = nnx.split(layer)
  g = jax.grad(lambda p: jnp.sum(W * nnx.merge(graphdef, p)(X)))(params)
  # d|t|/dt = sign(t): the hand-worked (-7, -2) with the first channel's sign flipped.
  np.testing.assert_allclose(g["threshold"][...], [7.0, -2.0], rtol=1e-6)


def test_layer_trains_under_jit_with_nnx():
  layer = schemes.DeltaActivation(3, sp_rate=1.0, fan_out=1.0, threshold_init=0.1)
  x = jax.nn.relu(jax.random.normal(jax.random.key(4), (2, 8, 3)))

  @nnx.jit
  def grads(layer, x):
    return nnx.grad(lambda m: m.sparsity_loss(m(x)))(layer)

  g = grads(layer, x).threshold[...]
  # Summation by parts: sum_t k_t dL/dq_t = (c / n) sum_t |k_t - k_{t-1}|, so the sparsity loss's threshold
  # gradient is -(c / n) sum_{b,t} |delta k| per channel (c = sp_rate * fan_out = 1, n = the number of deltas):
  # never positive, i.e. the loss alone only ever grows the steps.
  levels = np.round(np.asarray(x) / 0.1)
  jumps = np.abs(np.diff(levels, axis=1))
  np.testing.assert_allclose(g, -jumps.sum(axis=(0, 1)) / jumps.size, rtol=1e-5)


def test_bad_inputs_raise_naming_the_argument():
  with pytest.raises(ValueError, match="threshold: every entry must be > 0"):
    schemes.delta_quantize(X, jnp.array([0.5, 0.0]))
  with pytest.raises(ValueError, match="threshold: must broadcast"):
    schemes.delta_quantize(X, jnp.ones(3))
  with pytest.raises(ValueError, match="x: must be"):
    schemes.delta_quantize(jnp.ones(4), jnp.float32(0.5))
  with pytest.raises(ValueError, match="x: must have 2 channels"):
    schemes.DeltaActivation(2)(jnp.ones((1, 3, 4)))
  with pytest.raises(ValueError, match="threshold_init"):
    schemes.DeltaActivation(2, threshold_init=0.0)
  with pytest.raises(ValueError, match="sp_rate"):
    schemes.temporal_sparsity_loss(jnp.ones((1, 3)), sp_rate=-1.0)
  with pytest.raises(TypeError, match="include_first: must be a bool"):
    schemes.count_nonzero_deltas(jnp.ones((1, 3)), include_first=1)
  with pytest.raises(ValueError, match="q: has no frames"):
    schemes.delta_sparsity(jnp.ones((0, 3)), include_first=True)
