"""Diffusion training on a micro-budget: EDM, deferred patch masking and a download-free quality metric.

- EDM (Karras et al., NeurIPS 2022, https://arxiv.org/abs/2206.00364): the denoiser's preconditioning, the
  log-normal training noise levels, the weighted loss (optionally on kept patches only), the Karras noise
  levels and the Heun sampler (``jaxdyn.diffusion._edm``).
- Micro-budget diffusion (Sehwag et al., 2024, https://arxiv.org/abs/2407.15811): random patch masking with
  static shapes for deferred masking (``jaxdyn.diffusion._masking``); the model, a DiT with a patch-mixer
  before the mask, is `jaxdyn.models.DiT`.
- Sample quality (``jaxdyn.diffusion._quality``): a Frechet distance between Gaussian fits of a classifier's
  features (trained here: not FID) and the classifier's accuracy per requested class.
- MotionMaster (Hu et al., 2024, https://arxiv.org/abs/2404.15789), a training-free core: the split of a
  motion field into camera motion (background, continued into the moving-object mask by a Poisson /
  Laplace solve) and object motion, and a least-squares affine camera model (``jaxdyn.diffusion._camera_motion``).
- UniID (Pang et al., 2025, https://arxiv.org/abs/2512.03964), a training-free core: our reading of its
  inference-time normalised rescaling of identity features against the text features
  (``jaxdyn.diffusion._identity``).
- Embedded Representation Warmup (Liu et al., 2025, https://arxiv.org/abs/2504.10188): the REPA-style cosine
  alignment of early DiT tokens to a frozen encoder's patch features, its projector, the decaying alignment
  weight of the full phase and the warm-up-to-full layer transfer (``jaxdyn.diffusion._erw``).
- HarmoniCa (Huang et al., 2024, https://arxiv.org/abs/2410.01723): a block-level feature cache for the DiT
  sampler with fixed-interval schedules (``jaxdyn.diffusion._cache``), and the learned router trained by
  step-wise denoising training with the image-error-proxy objective (``jaxdyn.diffusion._harmonica``).
"""

from jaxdyn.diffusion import _erw
from jaxdyn.diffusion import _cache, _harmonica
from jaxdyn.diffusion._cache import *  # noqa: F403
from jaxdyn.diffusion._harmonica import *  # noqa: F403
from jaxdyn.diffusion import _camera_motion, _edm, _identity, _masking, _quality
from jaxdyn.diffusion._camera_motion import *  # noqa: F403
from jaxdyn.diffusion._erw import *  # noqa: F403
from jaxdyn.diffusion._edm import *  # noqa: F403  (each module lists its exports in __all__)
from jaxdyn.diffusion._identity import *  # noqa: F403
from jaxdyn.diffusion._masking import *  # noqa: F403
from jaxdyn.diffusion._quality import *  # noqa: F403

__all__ = [*_edm.__all__, *_masking.__all__, *_quality.__all__, *_camera_motion.__all__, *_identity.__all__,
           *_erw.__all__, *_cache.__all__, *_harmonica.__all__]
