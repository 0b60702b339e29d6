"""Bayesian neural networks: mean-field Gaussian layers over sparse active sets, and SSVI.

SSVI (Li et al., ICML 2024, https://arxiv.org/abs/2402.11025): a mean-field Gaussian posterior whose
active weights stay a sparse subset for all of training. Build the model from `GaussianDense` /
`GaussianConv` (or `BayesMLP`, `BayesCNN`, `BayesResNet18`) at a density; train with CE + warm-up-scaled
`model_kl` / N_train under the `ssvi` (or `ssvi_sgd`) Optax transform, which moves the active set
every dT steps (it must be the last transform of a chain; its state records the schedule and the
topology steps done); predict with the mean weights or `mc_predictive`; count the training FLOPs it
would save with `layer_costs` and `training_flops` (masked dense execution in XLA saves no wall time).
The models follow NNX's ``model.train()`` / ``model.eval()``: in training mode they sample their
weights from a required ``key``.
"""

from jaxdyn.bayes._flops import LayerCost
from jaxdyn.bayes._flops import layer_costs
from jaxdyn.bayes._flops import topology_update_count
from jaxdyn.bayes._flops import training_flops
from jaxdyn.bayes._kl import gaussian_kl
from jaxdyn.bayes._kl import kl_warmup
from jaxdyn.bayes._layers import GaussianConv
from jaxdyn.bayes._layers import GaussianDense
from jaxdyn.bayes._layers import MU_NAME
from jaxdyn.bayes._layers import active_mean
from jaxdyn.bayes._layers import RHO_NAME
from jaxdyn.bayes._layers import model_kl
from jaxdyn.bayes._layers import posterior_std
from jaxdyn.bayes._layers import random_mask
from jaxdyn.bayes._layers import rho_from_std
from jaxdyn.bayes._models import BayesCNN
from jaxdyn.bayes._models import BayesMLP
from jaxdyn.bayes._models import BayesResNet18
from jaxdyn.bayes._predict import mc_predictive
from jaxdyn.bayes._scores import CRITERIA
from jaxdyn.bayes._scores import folded_normal_moments
from jaxdyn.bayes._scores import removal_score
from jaxdyn.bayes._ssvi import SSVIState
from jaxdyn.bayes._ssvi import TopologySchedule
from jaxdyn.bayes._ssvi import drop_and_grow
from jaxdyn.bayes._ssvi import ssvi
from jaxdyn.bayes._ssvi import ssvi_sgd

__all__ = [
    "BayesCNN",
    "BayesMLP",
    "BayesResNet18",
    "CRITERIA",
    "GaussianConv",
    "GaussianDense",
    "LayerCost",
    "MU_NAME",
    "RHO_NAME",
    "SSVIState",
    "TopologySchedule",
    "active_mean",
    "drop_and_grow",
    "folded_normal_moments",
    "gaussian_kl",
    "kl_warmup",
    "layer_costs",
    "mc_predictive",
    "model_kl",
    "posterior_std",
    "random_mask",
    "removal_score",
    "rho_from_std",
    "ssvi",
    "ssvi_sgd",
    "topology_update_count",
    "training_flops",
]
