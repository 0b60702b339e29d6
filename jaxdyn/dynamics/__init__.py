"""Training dynamics: Diffusion Spectral Entropy (DSE) / Mutual Information (DSMI) and comparators.

Liao, Liu et al., "Assessing Neural Network Representations During Training Using
Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823.
"""

from jaxdyn.dynamics._comparators import (
    binned_shannon_entropy,
    knn_mutual_information_discrete,
    ksg_mutual_information,
    mine_mutual_information,
)
from jaxdyn.dynamics._diffusion import (
    diffusion_kernel,
    diffusion_spectral_entropy,
    gaussian_affinity,
    spectral_entropy,
)
from jaxdyn.dynamics._dsmi import diffusion_spectral_mutual_information, reference_classes
from jaxdyn.dynamics._slq import spectral_entropy_slq

__all__ = [
    "binned_shannon_entropy",
    "diffusion_kernel",
    "diffusion_spectral_entropy",
    "diffusion_spectral_mutual_information",
    "gaussian_affinity",
    "knn_mutual_information_discrete",
    "ksg_mutual_information",
    "mine_mutual_information",
    "reference_classes",
    "spectral_entropy",
    "spectral_entropy_slq",
]
