"""Calibration metrics against direct NumPy loops with the same bin edges, and their invariants."""

import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.calibration import accuracy
from jaxdyn.calibration import adaptive_calibration_error
from jaxdyn.calibration import brier_score
from jaxdyn.calibration import calibration_metrics
from jaxdyn.calibration import classwise_calibration_error
from jaxdyn.calibration import expected_calibration_error
from jaxdyn.calibration import negative_log_likelihood
from jaxdyn.calibration import reliability_bins
from jaxdyn.calibration import reliability_diagram
from jaxdyn.calibration._metrics import _uniform_bin_ids

NEG = -1e4  # exp(NEG) underflows to exactly 0 in float32.


# --- NumPy references: explicit loops over bins (lo, hi], the first bin closed below ---------


def _probs(logits):
  # The library's float32 softmax, so that confidences on an edge compare exactly alike.
  return np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1))


def _loop_ece(conf, hits, edges):
  n, total = len(conf), 0.0
  for b in range(len(edges) - 1):
    in_bin = (conf > edges[b]) & (conf <= edges[b + 1])
    if b == 0:
      in_bin |= conf == edges[0]
    if in_bin.any():
      total += in_bin.sum() / n * abs(hits[in_bin].mean() - conf[in_bin].astype(np.float64).mean())
  return total


def _uniform_edges(num_bins):
  return np.arange(num_bins + 1, dtype=np.float32) / np.float32(num_bins)


def ref_ece(logits, labels, num_bins=15):
  p = _probs(logits)
  return _loop_ece(p.max(-1), (np.argmax(logits, -1) == labels).astype(float),
                   _uniform_edges(num_bins))


def ref_adaptive_ece(logits, labels, num_bins=15):
  p = _probs(logits)
  conf = p.max(-1)
  s, n = np.sort(conf), len(conf)
  edges = np.array([s[0]] + [s[math.ceil(b * n / num_bins) - 1] for b in range(1, num_bins)]
                   + [s[-1]])
  return _loop_ece(conf, (np.argmax(logits, -1) == labels).astype(float), edges)


def ref_classwise_ece(logits, labels, num_bins=15):
  p = _probs(logits)
  k = p.shape[1]
  return np.mean([_loop_ece(p[:, c], (labels == c).astype(float), _uniform_edges(num_bins))
                  for c in range(k)])


def _data(n=300, k=7, seed=0):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(n, k)) * rng.uniform(0.5, 4, size=(n, 1))).astype(np.float32)
  labels = np.where(rng.uniform(size=n) < 0.6, logits.argmax(-1), rng.integers(0, k, n))
  logits[n // 2:n // 2 + 20] = logits[:20]  # exact ties between samples
  labels[n // 2:n // 2 + 20] = (labels[:20] + 1) % k
  return logits, labels


# --- ECE family ------------------------------------------------------------------------------


def _edge_case_logits():
  k = 5
  z = np.zeros((6, k), np.float32)
  z[1] = np.log([0.21, 0.1975, 0.1975, 0.1975, 0.1975])  # conf 0.21 (not an edge)
  z[2, 3:] = NEG  # conf exactly 1/3 = 5/15
  z[3, 2:] = NEG  # conf exactly 1/2 (an edge for even num_bins)
  z[4, 1:] = NEG  # conf exactly 1
  z[5] = [50.0, 0, 0, 0, 0]  # conf 1 after rounding
  labels = np.array([0, 1, 0, 1, 0, 2])
  return z, labels


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
  z, labels = _edge_case_logits()
  conf = _probs(z).max(-1)
  assert conf[0] == np.float32(3) / np.float32(15) and conf[2] == np.float32(5) / np.float32(15)
  assert conf[4] == 1.0 and conf[5] == 1.0
  counts = np.asarray(reliability_bins(z, labels, num_bins=15).counts)
  want = np.zeros(15)
  want[[2, 3, 4, 7, 14]] = [1, 1, 1, 1, 2]  # 0.2 -> (2/15, 3/15], 0.21 -> (3/15, 4/15], ...
  np.testing.assert_array_equal(counts, want)
  # Hand-worked ECE of rows 0 (conf 0.2, hit) and 1 (conf 0.21, miss) in separate bins; had 0.2
  # gone to the upper bin the two would share it and ECE would be |1 - 0.41| / 2 = 0.295.
  got = expected_calibration_error(z[:2], labels[:2])
  np.testing.assert_allclose(float(got), (0.8 + conf[1]) / 2, rtol=1e-6)
  for num_bins in (15, 2):
    np.testing.assert_allclose(float(expected_calibration_error(z, labels, num_bins=num_bins)),
                               ref_ece(z, labels, num_bins), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        float(classwise_calibration_error(z, labels, num_bins=num_bins)),
        ref_classwise_ece(z, labels, num_bins), rtol=1e-6, atol=1e-7)


def test_confidence_zero_is_counted_in_the_first_bin():
  edges = jnp.float32(jnp.arange(16)) / 15
  np.testing.assert_array_equal(
      np.asarray(_uniform_bin_ids(jnp.concatenate([jnp.array([0.0, 1e-30]), edges[1:]]), 15)),
      [0, 0] + list(range(15)))
  # Class-wise ECE meets p = 0 after underflow: p = [1, 0] with label 1 gives 1 for each class.
  z = np.array([[0.0, NEG]], np.float32)
  np.testing.assert_allclose(float(classwise_calibration_error(z, np.array([1]))), 1.0)
  np.testing.assert_allclose(ref_classwise_ece(z, np.array([1])), 1.0)


@pytest.mark.parametrize("num_bins", [15, 1])
def test_ece_family_matches_numpy_loops(num_bins):
  z, y = _data()
  np.testing.assert_allclose(float(expected_calibration_error(z, y, num_bins=num_bins)),
                             ref_ece(z, y, num_bins), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(float(adaptive_calibration_error(z, y, num_bins=num_bins)),
                             ref_adaptive_ece(z, y, num_bins), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(float(classwise_calibration_error(z, y, num_bins=num_bins)),
                             ref_classwise_ece(z, y, num_bins), rtol=1e-5, atol=1e-7)
  if num_bins == 1:  # One bin: |accuracy - mean confidence|, equal-width or equal-mass alike.
    p = _probs(z)
    gap = abs((z.argmax(-1) == y).mean() - p.max(-1).astype(np.float64).mean())
    np.testing.assert_allclose(float(expected_calibration_error(z, y, num_bins=1)), gap, rtol=1e-5)
    np.testing.assert_allclose(float(adaptive_calibration_error(z, y, num_bins=1)), gap, rtol=1e-5)


def test_adaptive_bins_are_equal_mass():
  # Without ties the sample of rank r lands in bin floor(r B / n): a second, rank-based reference.
  rng = np.random.default_rng(1)
  n, num_bins = 97, 15
  z = rng.normal(size=(n, 4)).astype(np.float32) * 3
  y = rng.integers(0, 4, n)
  conf = _probs(z).max(-1)
  assert len(np.unique(conf)) == n
  ranks = np.argsort(np.argsort(conf))
  bins = ranks * num_bins // n
  assert set(np.bincount(bins)) == {6, 7}
  hits = (z.argmax(-1) == y).astype(float)
  want = sum(abs((hits - conf)[bins == b].sum()) for b in range(num_bins)) / n
  np.testing.assert_allclose(float(adaptive_calibration_error(z, y, num_bins=num_bins)), want,
                             rtol=1e-5)
  # Hand-worked: n = 4, B = 2, confidences 0.6 0.7 | 0.8 0.9, all correct.
  z4 = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]], np.float32))
  got = adaptive_calibration_error(z4, np.zeros(4, int), num_bins=2)
  np.testing.assert_allclose(float(got), (0.4 + 0.3 + 0.2 + 0.1) / 4, rtol=1e-5)


def test_nll_brier_accuracy_match_numpy():
  z, y = _data()
  z64 = z.astype(np.float64)
  log_p = z64 - z64.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  np.testing.assert_allclose(float(negative_log_likelihood(z, y)),
                             -log_p[np.arange(len(y)), y].mean(), rtol=1e-5)
  brier = ((np.exp(log_p) - np.eye(z.shape[1])[y]) ** 2).sum(-1).mean()
  np.testing.assert_allclose(float(brier_score(z, y)), brier, rtol=1e-5)
  np.testing.assert_allclose(float(accuracy(z, y)), (z.argmax(-1) == y).mean(), rtol=1e-6)
  m = calibration_metrics(z, y)
  np.testing.assert_allclose(float(m["nll"]), float(negative_log_likelihood(z, y)), rtol=1e-6)
  np.testing.assert_allclose(float(m["ece"]), ref_ece(z, y), rtol=1e-5)
  np.testing.assert_allclose(float(m["adaptive_ece"]), ref_adaptive_ece(z, y), rtol=1e-5)
  np.testing.assert_allclose(float(m["classwise_ece"]), ref_classwise_ece(z, y), rtol=1e-5)
  np.testing.assert_allclose(float(m["brier"]), brier, rtol=1e-5)


def test_reliability_bins_reconstruct_ece():
  z, y = _data()
  bins = reliability_bins(z, y)
  counts, conf, acc = (np.asarray(a, np.float64) for a in (bins.counts, bins.confidence,
                                                            bins.accuracy))
  assert counts.sum() == len(y)
  np.testing.assert_allclose((counts / len(y) * np.abs(acc - conf)).sum(),
                             float(expected_calibration_error(z, y)), rtol=1e-5)


# --- Invariants ------------------------------------------------------------------------------


def test_metrics_invariant_to_permuting_the_batch():
  z, y = _data()
  perm = np.random.default_rng(2).permutation(len(y))
  a = calibration_metrics(z, y)
  b = calibration_metrics(z[perm], y[perm])
  for key in a:
    np.testing.assert_allclose(float(a[key]), float(b[key]), rtol=1e-6, atol=1e-7, err_msg=key)


def test_metrics_equal_under_jit_and_without_jit():
  z, y = _data()
  jitted = jax.jit(calibration_metrics, static_argnames="num_bins")(
      jnp.asarray(z), jnp.asarray(y), num_bins=12)
  with jax.disable_jit():
    eager = calibration_metrics(z, y, num_bins=12)
  for key in eager:
    np.testing.assert_allclose(float(jitted[key]), float(eager[key]), rtol=1e-6, atol=1e-7,
                               err_msg=key)
  np.testing.assert_allclose(float(eager["ece"]), ref_ece(z, y, 12), rtol=1e-5)


_SHARDED_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxdyn.calibration import calibration_metrics
    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(256, 6)) * 3, jnp.float32)
    y = jnp.asarray(rng.integers(0, 6, 256), jnp.int32)
    ref = calibration_metrics(z, y)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    zs = jax.device_put(z, NamedSharding(mesh, P("data")))
    ys = jax.device_put(y, NamedSharding(mesh, P("data")))
    assert len(zs.sharding.device_set) == 8
    eager = calibration_metrics(zs, ys)
    jitted = jax.jit(calibration_metrics)(zs, ys)
    print(json.dumps({k: [float(ref[k]), float(eager[k]), float(jitted[k])] for k in ref}))
""")


def test_metrics_on_arrays_sharded_over_8_cpu_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], env=env, cwd=root,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  values = json.loads(out.stdout.strip().splitlines()[-1])
  assert set(values) == {"accuracy", "ece", "adaptive_ece", "classwise_ece", "nll", "brier"}
  for key, (ref, eager, jitted) in values.items():
    np.testing.assert_allclose([eager, jitted], [ref, ref], rtol=1e-5, atol=1e-7, err_msg=key)


# --- Reliability diagram ---------------------------------------------------------------------


def test_reliability_diagram_writes_a_png(tmp_path):
  import matplotlib.image

  z, y = _data()
  path = reliability_diagram(z, y, tmp_path / "sub" / "rel.png", num_bins=10, title="test")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert matplotlib.image.imread(path).shape[:2] == (650, 500)


# --- Validation ------------------------------------------------------------------------------

BINNED = [expected_calibration_error, adaptive_calibration_error, classwise_calibration_error,
          calibration_metrics, reliability_bins]
ALL = BINNED + [negative_log_likelihood, brier_score, accuracy]


@pytest.mark.parametrize("fn", BINNED)
@pytest.mark.parametrize("num_bins", [0, -3, 2.5])
def test_bad_num_bins(fn, num_bins):
  with pytest.raises(ValueError, match="num_bins"):
    fn(np.zeros((3, 2)), np.array([0, 1, 0]), num_bins=num_bins)


@pytest.mark.parametrize("fn", ALL)
def test_bad_labels_and_shapes(fn):
  z = np.zeros((3, 2), np.float32)
  with pytest.raises(ValueError, match=r"labels.*\[0, 2\)"):
    fn(z, np.array([0, 2, 1]))
  with pytest.raises(ValueError, match="labels"):
    fn(z, np.array([0, -1, 1]))
  with pytest.raises(ValueError, match="labels"):
    fn(z, np.array([0, 1]))
  with pytest.raises(ValueError, match="labels"):
    fn(z, np.array([0.0, 1.0, 1.0]))
  with pytest.raises(ValueError, match="logits"):
    fn(np.zeros(3), np.array([0, 1, 0]))


def test_reliability_diagram_validates(tmp_path):
  with pytest.raises(ValueError, match="num_bins"):
    reliability_diagram(np.zeros((2, 2)), np.array([0, 1]), tmp_path / "x.png", num_bins=0)


# --- Adaptive ECE: the authors' binning (official_compat) ------------------------------------


def ref_adaptive_ece_authors(logits, labels, num_bins=15):
  """The authors' `AdaptiveECELoss`, re-implemented from its description.

  Edges: the sorted confidences linearly interpolated (np.interp, float64) at the B + 1 positions
  linspace(0, N, B + 1) of the index axis 0..N-1, clamped at N - 1; torch then compares a float32
  tensor with those edges in float32. Bins (lo, hi] for every consecutive pair of edges, the first
  one included, so confidences equal to the minimum are in no bin; each bin adds
  |accuracy - mean confidence| weighted by its share of all N samples.
  """
  conf = _probs(logits).max(-1)
  hits = (np.argmax(logits, -1) == labels).astype(float)
  n = len(conf)
  edges = np.interp(np.linspace(0, n, num_bins + 1), np.arange(n), np.sort(conf).astype(np.float64))
  edges = edges.astype(np.float32)
  total = 0.0
  for lo, hi in zip(edges[:-1], edges[1:]):
    in_bin = (conf > lo) & (conf <= hi)
    if in_bin.any():
      total += in_bin.mean() * abs(hits[in_bin].mean() - conf[in_bin].astype(np.float64).mean())
  return total


def test_adaptive_official_compat_hand_worked():
  # N = 4, B = 2, confidences 0.6 0.7 0.8 0.9, all correct. Edges at positions [0, 2, 4 -> 3]:
  # [0.6, 0.8, 0.9]; bins (0.6, 0.8] = {0.7, 0.8}, (0.8, 0.9] = {0.9}; 0.6 is dropped.
  z4 = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]], np.float32))
  y4 = np.zeros(4, int)
  got = adaptive_calibration_error(z4, y4, num_bins=2, official_compat=True)
  np.testing.assert_allclose(float(got), ((2 - 1.5) + (1 - 0.9)) / 4, rtol=1e-5)  # 0.15
  np.testing.assert_allclose(float(adaptive_calibration_error(z4, y4, num_bins=2)), 0.25, rtol=1e-5)
  # N = 3, B = 2: positions [0, 1.5, 3 -> 2] interpolate a middle edge (0.7 + 0.9) / 2 = 0.8.
  # Confidences 0.5 (hit), 0.7 (miss), 0.9 (hit): bins (0.5, 0.8] = {0.7}, (0.8, 0.9] = {0.9}.
  z3 = np.log(np.array([[0.5, 0.5], [0.7, 0.3], [0.9, 0.1]], np.float32))
  y3 = np.array([0, 1, 0])
  got = adaptive_calibration_error(z3, y3, num_bins=2, official_compat=True)
  np.testing.assert_allclose(float(got), (0.7 + 0.1) / 3, rtol=1e-5)
  # The default: edge at the ceil(3 / 2) = 2nd smallest, 0.7: bins [0.5, 0.7], (0.7, 0.9].
  np.testing.assert_allclose(float(adaptive_calibration_error(z3, y3, num_bins=2)),
                             (abs(1 - 0.5 - 0.7) + (1 - 0.9)) / 3, rtol=1e-5)
  for z, y in ((z4, y4), (z3, y3)):
    np.testing.assert_allclose(float(adaptive_calibration_error(z, y, num_bins=2, official_compat=True)),
                               ref_adaptive_ece_authors(z, y, 2), rtol=1e-5)


def test_adaptive_official_compat_drops_the_least_confident_sample():
  # All correct, distinct confidences: every bin's signed sum is positive, so the ECE is the sum of
  # (1 - c_i) / N over the counted samples; the authors' bins leave out only the minimum.
  rng = np.random.default_rng(3)
  n = 30
  z = (rng.normal(size=(n, 3)) * 2).astype(np.float32)
  y = z.argmax(-1)
  conf = _probs(z).max(-1).astype(np.float64)
  assert len(np.unique(conf)) == n
  default = float(adaptive_calibration_error(z, y, num_bins=15))
  official = float(adaptive_calibration_error(z, y, num_bins=15, official_compat=True))
  np.testing.assert_allclose(default, (1 - conf).sum() / n, rtol=1e-5)
  np.testing.assert_allclose(official, default - (1 - conf.min()) / n, rtol=1e-5)


@pytest.mark.parametrize("num_bins", [15, 4, 1])
def test_adaptive_official_compat_matches_the_authors_procedure(num_bins):
  z, y = _data()  # N = 300 with exact ties between samples
  got = adaptive_calibration_error(z, y, num_bins=num_bins, official_compat=True)
  np.testing.assert_allclose(float(got), ref_adaptive_ece_authors(z, y, num_bins), rtol=1e-5, atol=1e-7)
  assert abs(float(got) - ref_adaptive_ece(z, y, num_bins)) > 1e-4 or num_bins == 1
  m = calibration_metrics(z, y, num_bins=num_bins, official_compat=True)
  np.testing.assert_allclose(float(m["adaptive_ece"]), float(got), rtol=1e-6)
  np.testing.assert_allclose(float(m["ece"]), ref_ece(z, y, num_bins), rtol=1e-5)  # only adaptive changes
  # One sample: every edge is that sample, which no bin (lo, hi] holds.
  assert float(adaptive_calibration_error(z[:1], y[:1], num_bins=num_bins, official_compat=True)) == 0.0


# --- Input policy ------------------------------------------------------------------------------


def test_accuracy_does_not_count_a_nan_row_as_a_prediction():
  z = np.array([[np.nan, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
  y = np.array([0, 0, 0, 0])
  # argmax of the NaN row is 0, so it used to count as a hit: 0.75.
  assert np.isnan(float(accuracy(z, y)))
  assert np.isnan(float(jax.jit(accuracy)(z, y)))
  np.testing.assert_allclose(float(accuracy(z[1:], y[1:])), 2 / 3, rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_metrics_are_nan_for_non_finite_logits(bad):
  z, y = _data(n=40)
  z[5, 2] = bad  # -inf used to give finite metrics: softmax gives it probability 0.
  for name, value in calibration_metrics(z, y).items():
    assert np.isnan(float(value)), name
  for fn in (expected_calibration_error, adaptive_calibration_error, negative_log_likelihood):
    assert np.isnan(float(fn(z, y)))
  bins = reliability_bins(z, y)
  assert np.isnan(np.asarray(bins.counts)).all() and np.isnan(np.asarray(bins.accuracy)).all()
  np.testing.assert_allclose(np.asarray(bins.edges), np.arange(16) / 15, rtol=1e-6)


def test_metrics_are_nan_for_an_out_of_range_label_under_jit():
  z, y = _data(n=40)
  jitted = jax.jit(calibration_metrics)
  ok = jitted(z, y)
  np.testing.assert_allclose(float(ok["accuracy"]), (z.argmax(-1) == y).mean(), rtol=1e-6)
  for bad in (-1, 7):  # -1 must not be read as the last class
    m = jitted(z, np.where(np.arange(40) == 3, bad, y))
    assert all(np.isnan(float(v)) for v in m.values()), m


def test_empty_batch_and_no_classes_are_rejected_by_name():
  for fn in ALL:
    with pytest.raises(ValueError, match=r"logits: must hold at least one of its examples"):
      fn(np.zeros((0, 3), np.float32), np.zeros((0,), np.int32))
    with pytest.raises(ValueError, match=r"logits: must hold at least one of its classes"):
      fn(np.zeros((2, 0), np.float32), np.zeros((2,), np.int32))


def test_numpy_scalars_are_numbers():
  z, y = _data(n=50)
  want = float(expected_calibration_error(z, y, num_bins=10))
  for num_bins in (np.int64(10), np.int32(10), np.asarray(10)):  # a 0-d array used to fail in jit
    np.testing.assert_allclose(float(expected_calibration_error(z, y, num_bins=num_bins)), want, rtol=1e-6)
    np.testing.assert_allclose(float(calibration_metrics(z, y, num_bins=num_bins)["ece"]), want, rtol=1e-6)
  for bad in (True, np.float32(10.0)):
    with pytest.raises(ValueError, match="num_bins: must be an int"):
      expected_calibration_error(z, y, num_bins=bad)


def test_reliability_diagram_rejects_non_finite_logits_and_bad_kinds(tmp_path):
  z, y = _data(n=40)
  z[3, 1] = -np.inf
  with pytest.raises(ValueError, match=r"logits: must be finite, found .*-inf.* at index \(3, 1\)"):
    reliability_diagram(z, y, tmp_path / "x.png")
  assert not (tmp_path / "x.png").exists()
  with pytest.raises(TypeError, match="path: must be a str or os.PathLike"):
    reliability_diagram(z[:3], y[:3], 5)
  with pytest.raises(TypeError, match="title: must be a str"):
    reliability_diagram(z[:3], y[:3], tmp_path / "x.png", title=5)
