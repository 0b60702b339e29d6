"""DSE on synthetic manifolds: intrinsic dimension and noise, beside binned Shannon entropy.

    make repro CLAIM=dse_grows_with_intrinsic_dim
    make repro CLAIM=dse_more_noise_resistant_than_shannon

``get_config()`` is an ordinary training config (the ``dse`` callback on the ``synthetic``
classification dataset); the claims use ``get_synthetic_config()``. They are not training runs: each passes ``runner=experiments.techniques.dynamics.synthetic.synthetic_runner``, which draws
N = 1,000 points uniform in [-1, 1]^d, maps them into R^20 by a seeded random orthonormal basis, adds
Gaussian noise of std 0, 0.05, 0.1, 0.2 in all 20 dimensions, and computes DSE (exact, sigma = 1.0,
the per-axis half-width of the cube, t = 1) and the Shannon entropy of the embeddings binned 2 per
dimension (the authors' comparator). Settings were declared before any run.

Liao, Liu et al., arXiv 2312.04823, https://arxiv.org/abs/2312.04823;
https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
"""

import ml_collections

from configs import default
from experiments.claims import Arm, Claim, Expect
from experiments.techniques.dynamics.synthetic import synthetic_runner

DIMS = (1, 2, 4, 8)
NOISE_STDS = (0.0, 0.05, 0.1, 0.2)
METRIC_NOISE = 0.1


def get_config():
  """A training config: the ``dse`` callback on the ``synthetic`` classification dataset (MLP).

      python -m experiments.main --config=configs/dse_synthetic.py --workdir=runs/dse_synthetic
  """
  c = default.get_config()
  c.dataset = "synthetic"
  c.model = "mlp"
  c.model_kwargs = {"hidden": (128, 128), "dropout_rate": 0.0}
  c.num_train_steps = 500
  c.eval_every_steps = 100
  c.callbacks = ({"name": "dse", "every_steps": 100, "probe_size": 500, "sigma": 0.5},)
  return c


def get_synthetic_config():
  """The synthetic-manifold measurement the claims run (``seed`` plus a ``synthetic`` block)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.synthetic = ml_collections.ConfigDict({
      "num_points": 1000,
      "ambient_dim": 20,
      "intrinsic_dims": DIMS,
      "intrinsic_dim": 4,  # the arm's d (claim 1)
      "noise_stds": NOISE_STDS,  # first = no noise, last = most noise (noise_to_signal)
      "metric_noise_std": METRIC_NOISE,
      "sigma": 1.0,
      "t": 1,
      "num_bins_per_dim": 2,
      "estimator": "dse",  # whose noise_to_signal is reported (claim 2): dse | shannon
  })
  return c


PAPER = ("Liao, Liu et al., Assessing Neural Network Representations During Training Using "
         "Noise-Resilient Diffusion Spectral Entropy, 2023, https://arxiv.org/abs/2312.04823")
SETTING = ("N = 1,000 points uniform in [-1, 1]^d, embedded in R^20 by a random orthonormal basis (seeded), "
           "plus N(0, s^2) noise in all 20 dims, s in {0, 0.05, 0.1, 0.2}; DSE exact, sigma = 1.0, t = 1; "
           "Shannon entropy of the embeddings binned 2 per dimension. Seeds draw new points and bases.")


def get_claims():
  dim_arms = [Arm(f"d={d}", {"synthetic.intrinsic_dim": d}) for d in DIMS]
  return [
      Claim(
          name="dse_grows_with_intrinsic_dim",
          paper=PAPER,
          statement="DSE increases with the intrinsic dimension of the data.",
          setting=SETTING + f" Metric: DSE at noise s = {METRIC_NOISE}.",
          get_config=get_synthetic_config,
          arms=dim_arms,
          metric="dse",
          metric_name=f"DSE at s={METRIC_NOISE} [bits]",
          expects=[Expect("greater", f"d={b}", f"d={a}") for a, b in zip(DIMS, DIMS[1:])],
          report={"DSE s=0": lambda r: _row(r, "dse", 0.0), "DSE s=0.2": lambda r: _row(r, "dse", 0.2),
                  "Shannon s=0": lambda r: _row(r, "shannon", 0.0), f"Shannon s={METRIC_NOISE}": "shannon"},
          runner=synthetic_runner,
      ),
      Claim(
          name="dse_more_noise_resistant_than_shannon",
          paper=PAPER,
          statement="DSE is resistant to noise, unlike the Shannon entropy of binned embeddings.",
          setting=SETTING + " Metric (noise-to-signal, lower = more resistant): mean over d in "
          "{1, 2, 4, 8} of |H(d, s=0.2) - H(d, s=0)|, divided by |H(d=8, s=0) - H(d=1, s=0)|.",
          get_config=get_synthetic_config,
          arms=[Arm("DSE", {"synthetic.estimator": "dse"}),
                Arm("Shannon", {"synthetic.estimator": "shannon"})],
          metric="noise_to_signal",
          metric_name="noise-to-signal ratio",
          expects=[Expect("less", "DSE", "Shannon")],
          report={"d-spread at s=0": lambda r: _spread(r, 0.0), "d-spread at s=0.2": lambda r: _spread(r, 0.2)},
          runner=synthetic_runner,
      ),
  ]


def _row(results, estimator, noise):
  """The arm's own d at another noise level."""
  return results[f"{estimator}_d{results['intrinsic_dim']}_noise{noise:g}"]


def _spread(results, noise):
  """H(d=8) - H(d=1) at one noise level, for the arm's estimator."""
  e = results["estimator"]
  return results[f"{e}_d{max(DIMS)}_noise{noise:g}"] - results[f"{e}_d{min(DIMS)}_noise{noise:g}"]
