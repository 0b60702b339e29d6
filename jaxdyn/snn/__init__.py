"""Spiking neural networks: LIF neurons, surrogate gradients, encoders, models, and SLTT training.

Meng et al., "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
Networks" (SLTT), ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.

- `spike`, `register_surrogate`: Heaviside spikes with surrogate derivatives (triangle, rectangle,
  sigmoid, or your own).
- `lif_step`, `lif_multistep`, `LIF`: the LIF neuron with an explicit membrane carry;
  `lif_multistep_pallas`: the T loop as a Pallas kernel with a custom VJP.
- `direct_encode`, `poisson_encode`: input encoders; `fixed_dropout_masks`: dropout fixed over T.
- `through_time_loss`: BPTT / SLTT / SLTT-K training of any per-step function; `sltt_step_loss` the
  authors' per-step loss; `sample_steps` SLTT-K's K steps.
- `SpikingMLP`, `SpikingVGG11`, `SpikingPreActResNet18` (Flax NNX), `step_function`, `spiking_loss`;
  `conv2d` / `Conv2d`: `jaxdyn.models`' convolution (lowered per backend and shape, with gradients
  that stay fast inside time loops on XLA:CPU), re-exported.
"""

from jaxdyn.models import Conv2d
from jaxdyn.models import conv2d
from jaxdyn.snn._base import SpikingClassifier
from jaxdyn.snn._base import spiking_loss
from jaxdyn.snn._base import step_function
from jaxdyn.snn._dropout import fixed_dropout_masks
from jaxdyn.snn._encoding import ENCODERS
from jaxdyn.snn._encoding import direct_encode
from jaxdyn.snn._encoding import encode
from jaxdyn.snn._encoding import poisson_encode
from jaxdyn.snn._lif import LIF
from jaxdyn.snn._lif import LIFConfig
from jaxdyn.snn._lif import lif_multistep
from jaxdyn.snn._lif import lif_step
from jaxdyn.snn._mlp import SpikingMLP
from jaxdyn.snn._pallas_lif import lif_multistep_pallas
from jaxdyn.snn._resnet import SpikingPreActResNet18
from jaxdyn.snn._surrogate import SURROGATES
from jaxdyn.snn._surrogate import register_surrogate
from jaxdyn.snn._surrogate import spike
from jaxdyn.snn._surrogate import surrogate_derivative
from jaxdyn.snn._through_time import MODES
from jaxdyn.snn._through_time import ThroughTimeAux
from jaxdyn.snn._through_time import sample_steps
from jaxdyn.snn._through_time import sltt_step_loss
from jaxdyn.snn._through_time import through_time_loss
from jaxdyn.snn._vgg import SpikingVGG11

__all__ = [
    "Conv2d",
    "ENCODERS",
    "LIF",
    "LIFConfig",
    "MODES",
    "SURROGATES",
    "SpikingClassifier",
    "SpikingMLP",
    "SpikingPreActResNet18",
    "SpikingVGG11",
    "ThroughTimeAux",
    "conv2d",
    "direct_encode",
    "encode",
    "fixed_dropout_masks",
    "lif_multistep",
    "lif_multistep_pallas",
    "lif_step",
    "poisson_encode",
    "register_surrogate",
    "sample_steps",
    "sltt_step_loss",
    "spike",
    "spiking_loss",
    "step_function",
    "surrogate_derivative",
    "through_time_loss",
]
