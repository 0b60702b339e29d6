"""The polarization consensus sub-network: STE gates, the regularizer, the gated CNN and its extraction."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn.models import CNN
from jaxdyn.sparsity._polarization import (
    ChannelGate,
    CompressionReport,
    GatedCNN,
    binary_gate,
    cnn_flops,
    compression_report,
    consensus_masks,
    extract_subnetwork,
    polarization_regularizer,
    prune_channels,
    prune_channels_by_magnitude,
)

X1 = jax.random.normal(jax.random.key(1), (4, 32))  # 1-D signals
X2 = jax.random.normal(jax.random.key(2), (4, 6, 6, 2))  # 2-D images (6 -> 3 -> 2 under SAME pooling)


def _gated_1d(**kw):
  return GatedCNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0), **kw)


def _gated_2d():
  return GatedCNN(2, 3, spatial_dims=2, channels=(3, 5), hidden=8, rngs=nnx.Rngs(0))


def _fix_gates(model, keep):
  """Input-independent, polarised gates: block i's gate is on exactly where keep[i] is True."""
  for gate, k in zip(model.gates, keep):
    gate.out.kernel[...] = jnp.zeros_like(gate.out.kernel[...])
    gate.out.bias[...] = jnp.where(jnp.asarray(k), 8.0, -8.0)


def _close(a, b):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


# --- the straight-through binary gate ------------------------------------------------------------------

def test_binary_gate_forward_is_the_threshold_and_backward_the_identity():
  p = jnp.array([0.0, 0.2, 0.5, 0.50001, 0.7, 1.0])
  g = binary_gate(p)
  np.testing.assert_array_equal(g, [0, 0, 0, 1, 1, 1])
  assert g.dtype == jnp.float32
  w = jnp.array([1.0, -2.0, 3.0, 4.0, -5.0, 6.0])
  np.testing.assert_array_equal(jax.grad(lambda p: jnp.sum(w * binary_gate(p)))(p), w)
  np.testing.assert_array_equal(jax.jit(binary_gate)(p), g)
  assert binary_gate(jnp.zeros((0, 3))).shape == (0, 3)


def test_binary_gate_with_a_key_samples_bernoulli_and_is_still_straight_through():
  p = jnp.broadcast_to(jnp.array([0.0, 0.1, 0.5, 0.9, 1.0]), (20000, 5))
  g = np.asarray(binary_gate(p, key=jax.random.key(3)))
  assert set(np.unique(g)) <= {0.0, 1.0}
  np.testing.assert_allclose(g.mean(axis=0), [0.0, 0.1, 0.5, 0.9, 1.0], atol=0.015)
  assert g[:, 0].sum() == 0 and g[:, 4].all()
  np.testing.assert_array_equal(binary_gate(p, key=jax.random.key(3)), g)  # the key decides
  w = jnp.arange(5.0)
  grad = jax.grad(lambda p: jnp.sum(w * binary_gate(p, key=jax.random.key(4))))(p)
  np.testing.assert_array_equal(grad, jnp.broadcast_to(w, p.shape))


def test_binary_gate_nonfinite_and_out_of_range_probabilities():
  assert np.isnan(binary_gate(jnp.array([0.3, jnp.nan]))[1])
  with pytest.raises(ValueError, match=r"^probs: must be probabilities in \[0, 1\], found 1.5"):
    binary_gate(jnp.array([0.2, 1.5]))
  with pytest.raises(ValueError, match="^probs: must be probabilities"):
    binary_gate(jnp.array([-jnp.inf]))
  out = jax.jit(binary_gate)(jnp.array([0.2, 1.5, -0.1]))  # no eager check under jit: NaN instead
  assert out[0] == 0 and np.isnan(out[1:]).all()
  with pytest.raises(TypeError, match="^key: must be a jax.random key"):
    binary_gate(jnp.array([0.2]), key=3)


# --- the regularizer -----------------------------------------------------------------------------------

P = jnp.array([[0.9, 0.2], [0.7, 0.0]])  # P = (0.09 + 0.16 + 0.21 + 0) / 4, C = 0.01, kept fraction 0.5


def test_regularizer_on_a_hand_worked_example():
  value, terms = polarization_regularizer(P, target_sparsity=0.75, return_terms=True)
  got = [float(terms[k]) for k in ("polarization", "consensus", "sparsity", "keep")]
  np.testing.assert_allclose(got, [0.115, 0.01, 0.25, 0.5], rtol=1e-6)
  np.testing.assert_allclose(value, 0.115 + 2 * 0.01 + 2 * 0.25, rtol=1e-6)  # default weights 1, 2, 2
  weighted = polarization_regularizer(P, target_sparsity=0.75, polarization_weight=2, consensus_weight=3,
                                      sparsity_weight=4)
  np.testing.assert_allclose(weighted, 2 * 0.115 + 3 * 0.01 + 4 * 0.25, rtol=1e-6)
  np.testing.assert_allclose(polarization_regularizer(P, target_sparsity=0.5), 0.135, rtol=1e-6)  # k = rho
  # Equal polarization and consensus weights: P + C is the polarization of the batch-mean gate.
  p = jax.random.uniform(jax.random.key(5), (7, 5))
  p_bar = p.mean(axis=0)
  pc = polarization_regularizer(p, target_sparsity=0.3, consensus_weight=1.0, sparsity_weight=0.0)
  np.testing.assert_allclose(pc, jnp.mean(p_bar * (1 - p_bar)), rtol=1e-5)
  # Blocks: the mean of the per-block values (and terms).
  q = jax.random.uniform(jax.random.key(6), (2, 3))
  both, terms = polarization_regularizer((P, q), target_sparsity=0.5, return_terms=True)
  np.testing.assert_allclose(both, (polarization_regularizer(P, target_sparsity=0.5)
                                    + polarization_regularizer(q, target_sparsity=0.5)) / 2, rtol=1e-6)
  np.testing.assert_allclose(terms["keep"], (0.5 + float((q > 0.5).mean())) / 2, rtol=1e-6)


@pytest.mark.parametrize("rho", [0.25, 0.5, 0.75])
def test_regularizer_gradient_is_its_formula_with_a_straight_through_budget(rho):
  a, c, s = 2.0, 3.0, 4.0
  grad = jax.grad(lambda p: polarization_regularizer(p, target_sparsity=1 - rho, polarization_weight=a,
                                                     consensus_weight=c, sparsity_weight=s))(P)
  p = np.asarray(P, np.float64)
  kept = (p > 0.5).mean()  # 0.5: at rho = 0.5 the budget is met and does not push
  expected = (a * (1 - 2 * p) + c * 2 * (p - p.mean(axis=0)) + s * np.sign(kept - rho)) / p.size
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_regularizer_minimum_is_polarised_consensual_gates_at_the_keep_ratio():
  units, batch = 4, 3
  values = []
  for k in range(units + 1):
    gates = np.zeros((batch, units), np.float32)
    gates[:, :k] = 1.0
    values.append(float(polarization_regularizer(gates, target_sparsity=0.5)))
  np.testing.assert_allclose(values, [2 * abs(k / units - 0.5) for k in range(units + 1)], rtol=1e-6)
  assert int(np.argmin(values)) == 2 and values[2] == 0.0
  disagree = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], np.float32)  # half kept, no consensus
  np.testing.assert_allclose(polarization_regularizer(disagree, target_sparsity=0.5), 2 / 9, rtol=1e-6)  # C = 1/9
  soft = np.array([[0.9, 0.8, 0.1, 0.2]] * batch, np.float32)  # a consensus, half kept, not polarised
  np.testing.assert_allclose(polarization_regularizer(soft, target_sparsity=0.5), 0.125, rtol=1e-6)
  # Random gates never do better than the minimum.
  p = jax.random.uniform(jax.random.key(7), (200, batch, units))
  assert float(jax.vmap(lambda q: polarization_regularizer(q, target_sparsity=0.5))(p).min()) > 0


def test_regularizer_bad_inputs_are_named_and_nonfinite_gates_give_nan():
  with pytest.raises(ValueError, match=r"^target_sparsity: must be a real number in \[0, 1\), got 1.5$"):
    polarization_regularizer(P, target_sparsity=1.5)
  for bad in (1.0, -0.1, math.nan, True, "0.5"):
    with pytest.raises(ValueError, match="^target_sparsity: "):
      polarization_regularizer(P, target_sparsity=bad)
  for name in ("polarization_weight", "consensus_weight", "sparsity_weight"):
    for bad in (-1.0, math.inf, math.nan, False, 1e31):
      with pytest.raises(ValueError, match=f"^{name}: "):
        polarization_regularizer(P, target_sparsity=0.5, **{name: bad})
  with pytest.raises(ValueError, match=r"^gates: must be probabilities in \[0, 1\], found 1.2"):
    polarization_regularizer(jnp.array([[0.5, 1.2]]), target_sparsity=0.5)
  with pytest.raises(ValueError, match="^gates: must hold at least one of its samples"):
    polarization_regularizer(jnp.zeros((0, 3)), target_sparsity=0.5)
  with pytest.raises(ValueError, match="^gates: must hold at least one of its units"):
    polarization_regularizer(jnp.zeros((3, 0)), target_sparsity=0.5)
  with pytest.raises(ValueError, match="^gates: must be a"):
    polarization_regularizer(jnp.ones(3) / 2, target_sparsity=0.5)
  with pytest.raises(ValueError, match="^gates: every block must have the same batch"):
    polarization_regularizer([jnp.ones((2, 3)) / 2, jnp.ones((3, 3)) / 2], target_sparsity=0.5)
  with pytest.raises(ValueError, match="^gates: need at least one"):
    polarization_regularizer([], target_sparsity=0.5)
  assert np.isnan(polarization_regularizer(P.at[1, 0].set(jnp.nan), target_sparsity=0.5))
  f = jax.jit(lambda p: polarization_regularizer(p, target_sparsity=0.5))
  assert np.isnan(f(P.at[0, 1].set(1.5))) and np.isnan(f(P.at[0, 1].set(jnp.inf)))
  np.testing.assert_allclose(f(P), 0.135, rtol=1e-6)


# --- the gating module and the gated CNN ---------------------------------------------------------------

def test_gated_cnn_calling_convention_and_gate_probabilities():
  m = _gated_1d()
  logits, h, gates = m(X1, return_features=True, return_gates=True)
  assert logits.shape == (4, 3) and h.shape == (4, 16) and [g.shape for g in gates] == [(4, 4), (4, 8)]
  _close(m(X1), logits)
  _close(m(X1, return_gates=True)[1][1], gates[1])
  _close(m.features(X1), h)
  _close(m.apply_head(h), logits)
  # Block 0's gate reads the pooled block input: here the signal itself.
  _close(gates[0], m.gates[0](X1[..., None]))
  _close(gates[0], jax.nn.sigmoid(m.gates[0].out(nnx.relu(m.gates[0].hidden(X1.mean(axis=1, keepdims=True))))))
  assert isinstance(m, nnx.Module) and m.channels == (4, 8)
  assert m(jnp.zeros((0, 32))).shape == (0, 3)
  images = _gated_2d()(X2, return_gates=True)
  assert images[0].shape == (4, 3) and [g.shape for g in images[1]] == [(4, 3), (4, 5)]


def test_gated_cnn_mode_drives_dropout_only():
  m = _gated_1d(dropout_rate=0.5)
  key = jax.random.key(8)
  evaluated = m(X1)
  with pytest.raises(ValueError, match="^key: a jax.random key is required"):
    m(X1, train=True)
  trained = m(X1, train=True, key=key)
  assert not np.allclose(trained, evaluated)
  m.train()
  _close(m(X1, key=key), trained)
  _close(m(X1, train=False), evaluated)  # the explicit argument wins
  m.eval()
  _close(m(X1), evaluated)


def test_polarised_gates_multiply_their_channels_and_masks_fix_them():
  m = _gated_1d()
  keep = [np.array([True, False, True, True]), np.array([1, 0, 0, 1, 1, 1, 0, 1], bool)]
  _fix_gates(m, keep)
  _, gates = m(X1, return_gates=True)
  np.testing.assert_array_equal(np.asarray(gates[0]) > 0.5, np.broadcast_to(keep[0], (4, 4)))
  _close(m(X1), m(X1, masks=keep))
  _close(m(X1), m(X1, masks=[k.astype(np.float32) for k in keep]))
  assert not np.allclose(m(X1), m(X1, masks=[np.ones(4, bool), np.ones(8, bool)]))
  # The gate multiplies the channel: the block's features are those of zeroed filters.
  h = m.features(X1, masks=keep)
  plain = _gated_1d()
  _fix_gates(plain, [np.ones(4, bool), np.ones(8, bool)])
  for conv, k in zip(plain.convs, keep):
    conv.kernel[...] = conv.kernel[...] * k
    conv.bias[...] = conv.bias[...] * k
  _close(plain.features(X1), h)


def test_straight_through_gradient_reaches_the_gating_modules():
  m = _gated_1d()
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)

  def loss(params):
    return jnp.sum(nnx.merge(graphdef, params, rest)(X1) ** 2)

  grads = jax.grad(loss)(params)
  assert float(jnp.abs(grads["gates"][1]["out"]["kernel"][...]).sum()) > 0
  assert float(jnp.abs(grads["gates"][0]["hidden"]["kernel"][...]).sum()) > 0


# --- consensus and extraction --------------------------------------------------------------------------

def _quorum_model():
  """Block 0's gate logit for a constant signal c is w * c + b: unit 0 on for c >= 2, unit 1 for c >= 1,
  unit 2 always, unit 3 never; block 1 always on."""
  m = _gated_1d(gate_hidden=2)
  g = m.gates[0]
  g.hidden.kernel[...] = jnp.array([[1.0, 0.0]])
  g.hidden.bias[...] = jnp.zeros(2)
  g.out.kernel[...] = jnp.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
  g.out.bias[...] = jnp.array([-1.5, -0.5, 5.0, -5.0])
  _fix_gates_block(m, 1, np.ones(8, bool))
  return m


def _fix_gates_block(m, i, keep):
  m.gates[i].out.kernel[...] = jnp.zeros_like(m.gates[i].out.kernel[...])
  m.gates[i].out.bias[...] = jnp.where(jnp.asarray(keep), 8.0, -8.0)


def test_consensus_masks_keep_the_channels_a_quorum_agrees_on():
  m = _quorum_model()
  x = jnp.broadcast_to(jnp.arange(4.0)[:, None], (4, 32))  # constant signals 0, 1, 2, 3: on-fractions
  expected = {0.25: [1, 1, 1, 0], 0.5: [1, 1, 1, 0], 0.75: [0, 1, 1, 0], 1.0: [0, 0, 1, 0]}  # .5 .75 1 0
  for quorum, keep in expected.items():
    masks = consensus_masks(m, x, quorum=quorum)
    np.testing.assert_array_equal(masks[0], np.array(keep, bool))
    np.testing.assert_array_equal(masks[1], np.ones(8, bool))
  # A block where no channel reaches the quorum keeps its most often (then most probably) on channel.
  _fix_gates_block(m, 1, np.zeros(8, bool))
  m.gates[1].out.bias[...] = m.gates[1].out.bias[...].at[5].set(-4.0)
  np.testing.assert_array_equal(consensus_masks(m, x)[1], np.arange(8) == 5)
  _fix_gates_block(m, 1, np.zeros(8, bool))  # all tied: the lowest index
  np.testing.assert_array_equal(consensus_masks(m, x)[1], np.arange(8) == 0)


@pytest.mark.parametrize("dims", [1, 2])
def test_extracted_network_is_the_gated_one_at_the_consensus_mask(dims):
  m, x = (_gated_1d(), X1) if dims == 1 else (_gated_2d(), X2)
  keep = ([np.array([1, 0, 1, 1], bool), np.array([1, 0, 0, 1, 1, 1, 0, 1], bool)] if dims == 1 else
          [np.array([0, 1, 1], bool), np.array([1, 1, 0, 1, 0], bool)])
  _fix_gates(m, keep)
  before = jax.tree.map(np.asarray, nnx.state(m))
  masks = consensus_masks(m, x)
  for got, want in zip(masks, keep):
    np.testing.assert_array_equal(got, want)
  cnn = extract_subnetwork(m, x)
  assert type(cnn) is CNN and not hasattr(cnn, "gates")
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(nnx.state(cnn)))  # concrete parameters
  assert cnn.spatial_dims == dims and cnn.deterministic
  logits, h = cnn(x, return_features=True)
  _close(logits, m(x, masks=masks))
  _close(logits, m(x))  # polarised, consensual gates: the dynamic network is the static one
  _close(h, m.features(x, masks=masks))
  # The pruned channels are physically gone.
  k0, k1 = (int(k.sum()) for k in keep)
  c_in = 1 if dims == 1 else 2
  assert cnn.convs[0].kernel.shape == (3,) * dims + (c_in, k0) and cnn.convs[0].bias.shape == (k0,)
  assert cnn.convs[1].kernel.shape == (3,) * dims + (k0, k1) and cnn.convs[1].bias.shape == (k1,)
  assert cnn.dense.kernel.shape == (k1, m.dense.out_features)
  kept0, kept1 = (np.flatnonzero(k) for k in keep)
  _close(cnn.convs[1].kernel[...], np.asarray(m.convs[1].kernel[...])[..., kept0, :][..., kept1])
  _close(cnn.dense.kernel[...], np.asarray(m.dense.kernel[...])[kept1])
  # The gated model is unchanged.
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, nnx.state(m)))


def test_extraction_with_input_dependent_gates_matches_the_masked_network():
  m = _gated_1d(gate_bias=0.0)  # gates near 1/2: they differ between samples
  x = jax.random.normal(jax.random.key(9), (16, 32))
  masks = consensus_masks(m, x)
  _close(extract_subnetwork(m, x)(X1), m(X1, masks=masks))
  _close(prune_channels(m, masks)(X1), m(X1, masks=masks))


def test_prune_channels_by_magnitude_keeps_the_largest_l1_filters():
  cnn = CNN(1, 3, spatial_dims=1, channels=(4, 5), hidden=16, rngs=nnx.Rngs(0))
  scale0 = jnp.array([0.5, 3.0, 1.0, 2.0])  # L1 order: 1, 3, 2, 0
  cnn.convs[0].kernel[...] = jnp.ones((3, 1, 4)) * scale0
  scale1 = jnp.array([1.0, 2.0, 2.0, 0.1, 2.0])  # ties between 1, 2, 4: the lower index first
  cnn.convs[1].kernel[...] = jnp.sign(cnn.convs[1].kernel[...]) * scale1
  small = prune_channels_by_magnitude(cnn, 0.5)  # floor(0.5 * 4 + 1/2) = 2, floor(0.5 * 5 + 1/2) = 3
  assert [c.out_features for c in small.convs] == [2, 3]
  _close(small.convs[0].kernel[...], np.ones((3, 1, 2)) * [3.0, 2.0])
  expected1 = np.asarray(cnn.convs[1].kernel[...])[..., [1, 3], :][..., [1, 2, 4]]
  _close(small.convs[1].kernel[...], expected1)
  # The pruned network computes the dense one with the other filters (and biases) zeroed.
  zeroed = CNN(1, 3, spatial_dims=1, channels=(4, 5), hidden=16, rngs=nnx.Rngs(0))
  nnx.update(zeroed, nnx.state(cnn))
  for conv, keep in zip(zeroed.convs, ([0, 1, 0, 1], [0, 1, 1, 0, 1])):
    conv.kernel[...] = conv.kernel[...] * jnp.array(keep, jnp.float32)
    conv.bias[...] = conv.bias[...] * jnp.array(keep, jnp.float32)
  _close(small(X1), zeroed(X1))
  assert [c.out_features for c in prune_channels_by_magnitude(cnn, 0.01).convs] == [1, 1]  # at least one
  assert [c.out_features for c in prune_channels_by_magnitude(cnn, 1).convs] == [4, 5]
  for bad in (0.0, 1.5, math.nan, True):
    with pytest.raises(ValueError, match="^keep_fraction: "):
      prune_channels_by_magnitude(cnn, bad)
  with pytest.raises(TypeError, match="^cnn: must be a CNN, got GatedCNN"):
    prune_channels_by_magnitude(_gated_1d(), 0.5)
  cnn.convs[1].kernel[...] = cnn.convs[1].kernel[...].at[0, 0, 0].set(jnp.nan)
  with pytest.raises(ValueError, match="^cnn: conv block 1's kernel holds a NaN"):
    prune_channels_by_magnitude(cnn, 0.5)


def test_flops_and_compression_report_by_hand():
  dense = CNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
  x = jnp.ones((1, 15))  # 15 positions, then ceil(15 / 2) = 8
  full = 2 * 3 * 1 * 4 * 15 + 2 * 3 * 4 * 8 * 8 + 2 * 8 * 16 + 2 * 16 * 3
  assert cnn_flops(dense, x) == full == cnn_flops(_gated_1d(), x)  # the gates are not counted
  assert cnn_flops(dense, jax.ShapeDtypeStruct((7, 15, 1), jnp.float32)) == full
  small = prune_channels(dense, [np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0, 1, 0, 0, 0], bool)])
  pruned = 2 * 3 * 1 * 2 * 15 + 2 * 3 * 2 * 3 * 8 + 2 * 3 * 16 + 2 * 16 * 3
  report = compression_report(dense, small, x)
  assert report == CompressionReport((4, 8), (2, 3), full, pruned)
  assert report.channel_fraction == 5 / 12 and report.flops_fraction == pruned / full
  images = _gated_2d()
  flops = 2 * 9 * 2 * 3 * 36 + 2 * 9 * 3 * 5 * 9 + 2 * 5 * 8 + 2 * 8 * 3
  assert cnn_flops(images, X2) == flops
  with pytest.raises(ValueError, match="^example_input: must be"):
    cnn_flops(dense, jnp.ones((1, 15, 2)))
  with pytest.raises(ValueError, match="^pruned: must be a pruned copy of dense"):
    compression_report(small, dense, x)
  with pytest.raises(TypeError, match="^pruned: must be a CNN, got GatedCNN"):
    compression_report(dense, _gated_1d(), x)
  with pytest.raises(TypeError, match="^model: must be a CNN or GatedCNN"):
    cnn_flops(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), x)


# --- bad arguments of the model and the extraction functions -------------------------------------------

def test_bad_arguments_are_named():
  kw = dict(spatial_dims=1, rngs=nnx.Rngs(0))
  for name, bad in [("in_channels", 0), ("num_classes", 2.0), ("spatial_dims", 3), ("channels", (4, 0)),
                    ("channels", ()), ("channels", 4), ("hidden", True), ("dropout_rate", 1.0),
                    ("gate_hidden", 0), ("gate_bias", math.nan), ("gate_bias", math.inf)]:
    args = {"in_channels": 1, "num_classes": 3, **kw, name: bad}
    with pytest.raises(ValueError, match=f"^{name}: "):
      GatedCNN(**args)
  for name, bad in [("in_features", 0), ("units", 1.0), ("hidden", False), ("bias_init", math.nan)]:
    args = {"in_features": 1, "units": 4, "rngs": nnx.Rngs(0), name: bad}
    with pytest.raises(ValueError, match=f"^{name}: "):
      ChannelGate(**args)
  with pytest.raises(ValueError, match="^x: must be"):
    ChannelGate(2, 4, rngs=nnx.Rngs(0))(jnp.ones((3, 8, 3)))
  m = _gated_1d()
  with pytest.raises(ValueError, match="^x: must be"):
    m(jnp.ones((2, 32, 2)))
  for bad in ([np.ones(4, bool)], [np.ones(4, bool), np.ones(7, bool)], [np.ones(4), np.full(8, 0.5)], "ab",
              [np.ones(4, bool), np.array(["a"] * 8)]):
    with pytest.raises((ValueError, TypeError), match="^masks: "):
      m(X1, masks=bad)
  with pytest.raises(TypeError, match="^model: must be a GatedCNN or GatedResNet, got CNN"):
    consensus_masks(CNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0)), X1)
  for quorum in (0.0, 1.5, math.nan, True):
    with pytest.raises(ValueError, match="^quorum: "):
      consensus_masks(m, X1, quorum=quorum)
  with pytest.raises(ValueError, match="^x_calib: must hold at least one"):
    consensus_masks(m, jnp.zeros((0, 32)))
  with pytest.raises(ValueError, match="^x_calib: must be finite"):
    extract_subnetwork(m, X1.at[2, 3].set(jnp.nan))
  with pytest.raises(ValueError, match=r"^x_calib: must be \(batch, length"):
    extract_subnetwork(m, jnp.ones((2, 32, 3)))
  with pytest.raises(ValueError, match="^masks: block 1 keeps no channel"):
    prune_channels(m, [np.ones(4, bool), np.zeros(8, bool)])
  with pytest.raises(ValueError, match="^masks: need one"):
    prune_channels(m, None)
  with pytest.raises(TypeError, match="^model: must be a CNN or GatedCNN"):
    prune_channels("cnn", [np.ones(4, bool), np.ones(8, bool)])


def test_nonfinite_inputs_give_nonfinite_logits_for_their_sample():
  m = _gated_1d()
  for value in (jnp.nan, jnp.inf, -jnp.inf):
    logits, gates = m(X1.at[1, 5].set(value), return_gates=True)
    assert not np.isfinite(logits[1]).any() and np.isfinite(np.delete(np.asarray(logits), 1, 0)).all()
    assert np.isnan(gates[0][1]).all()


# --- one pass of training on a tiny problem ------------------------------------------------------------

def test_training_drives_every_block_to_the_keep_ratio_and_a_consensus():
  x = jax.random.normal(jax.random.key(0), (32, 16))
  y = (x[:, :8].mean(axis=1) > x[:, 8:].mean(axis=1)).astype(jnp.int32)
  m = GatedCNN(1, 2, spatial_dims=1, channels=(8, 8), hidden=16, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)
  tx = optax.adam(0.01)

  def loss_fn(params):
    logits, gates = nnx.merge(graphdef, params, rest)(x, return_gates=True)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + polarization_regularizer(gates, target_sparsity=0.5)

  @jax.jit
  def train(params):
    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
      return (optax.apply_updates(params, updates), state), None
    return jax.lax.scan(step, (params, tx.init(params)), None, length=400)[0][0]

  m = nnx.merge(graphdef, train(params), rest)
  logits, gates = m(x, return_gates=True)
  for g in gates:
    hard = np.asarray(g) > 0.5
    assert abs(hard.mean() - 0.5) <= 1 / 16  # the kept fraction of each block: the keep ratio
    assert (hard == hard[:1]).mean() >= 0.95  # the samples agree
  assert [int(k.sum()) for k in consensus_masks(m, x)] in ([4, 4], [3, 4], [4, 3], [5, 4], [4, 5])
  cnn = extract_subnetwork(m, x)
  gated_acc = float((logits.argmax(-1) == y).mean())
  static_acc = float((cnn(x).argmax(-1) == y).mean())
  assert gated_acc >= 0.9 and static_acc >= gated_acc - 0.05
  assert compression_report(m, cnn, x).channel_fraction <= 0.6


# --- the gated ResNet ----------------------------------------------------------------------------------

def _gated_resnet():
  from jaxdyn.sparsity import GatedResNet
  m = GatedResNet(3, 10, stage_sizes=(1, 1), width=4, rngs=nnx.Rngs(0))
  # Non-trivial BatchNorm statistics and scales, so that slicing them is what the test checks.
  nnx.update(m, jax.tree.map(lambda v: v + jax.random.uniform(jax.random.key(2), v.shape),
                             nnx.state(m, nnx.BatchStat)))
  for b in m.backbone.blocks:
    b.bn2.scale[...] = jnp.ones_like(b.bn2.scale[...])  # zero-initialised: the inner channels would not matter
  return m


def test_gated_resnet_pruned_copy_computes_the_gated_network_at_its_masks_exactly():
  from jaxdyn.models import ResNet
  m = _gated_resnet()
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 3))
  masks = [np.array([1, 0, 1, 1], bool), np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)]
  sub = prune_channels(m, masks)
  assert isinstance(sub, ResNet) and sub.inner_widths == (3, 4)
  assert sub.blocks[0].conv1.kernel.shape == (3, 3, 4, 3) and sub.blocks[0].conv2.kernel.shape == (3, 3, 3, 4)
  np.testing.assert_array_equal(sub.blocks[1].bn1.mean[...], m.backbone.blocks[1].bn1.mean[...][masks[1]])
  np.testing.assert_allclose(sub(x, train=False), m(x, train=False, masks=masks), atol=1e-5)
  # The masks matter: all channels on is the dense backbone, and differs from the pruned network.
  full = m(x, train=False, masks=[np.ones(4, bool), np.ones(8, bool)])
  np.testing.assert_allclose(full, m.backbone(x, train=False), atol=1e-5)
  diff = jnp.abs(full - sub(x, train=False)).max()
  assert float(diff) > 0.1 * float(jnp.abs(full).max()) > 0


def test_gated_resnet_flops_and_report_by_hand():
  m = _gated_resnet()
  x = jnp.ones((1, 8, 8, 3))
  # stem 8x8x(3x3x3x4); block 0: two 8x8x(3x3x4x4); block 1 (stride 2, 4x4): 3x3x4x8, 3x3x8x8 and the
  # 1x1 4->8 shortcut; head 8x10; 2 FLOPs per multiply-add.
  dense = 2 * (64 * 108 + 2 * 64 * 144 + 16 * 288 + 16 * 576 + 16 * 32 + 80)
  assert cnn_flops(m, x) == dense == 79520
  sub = prune_channels(m, [np.array([1, 0, 1, 1], bool), np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)])
  pruned = 2 * (64 * 108 + 2 * 64 * 108 + 16 * 144 + 16 * 288 + 16 * 32 + 80)
  rep = compression_report(m, sub, x)
  assert (rep.dense_channels, rep.kept_channels, rep.dense_flops, rep.flops) == ((4, 8), (3, 4), dense, pruned)


def test_gated_resnet_gates_train_with_batch_statistics_and_extract_to_a_plain_resnet():
  m = _gated_resnet()
  x = jax.random.normal(jax.random.key(3), (5, 8, 8, 3))
  logits, probs = m(x, train=True, return_gates=True)
  assert logits.shape == (5, 10) and [p.shape for p in probs] == [(5, 4), (5, 8)]
  # Straight-through: the gates' modules get gradients through the binary gates.
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)
  grads = jax.grad(lambda p: nnx.merge(graphdef, p, rest)(x, train=False).sum())(params)
  assert float(jnp.abs(grads["gates"][0]["out"]["kernel"][...]).sum()) > 0
  sub = extract_subnetwork(m, x)
  np.testing.assert_allclose(sub(x, train=False), m(x, train=False, masks=consensus_masks(m, x)), atol=1e-5)
