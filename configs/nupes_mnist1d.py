"""Post-training quantization of the default MNIST-1D CNN: NUPES against round-to-nearest and AdaRound.

    python -m experiments.main --config=configs/nupes_mnist1d.py --workdir=runs/nupes
    python -m experiments.main --config=configs/nupes_mnist1d.py --workdir=runs/rtn \\
        --config.callbacks='({"name": "quantize_eval", "method": "rtn"},)'
    make repro CLAIM=nupes_4bit
    make repro CLAIM=nupes_3bit

The default experiment (the 1-D CNN, 3,000 Adam steps) is trained in float; at the end
`quantize_eval` puts every kernel on a 4-bit and a 3-bit grid (biases stay in float), layer by layer in
order, each layer calibrated on 256 training signals under the layers quantized before it, and
reports the test accuracy of each. NUPES searches the power exponent on the layer's output and then
optimises the integer codes and the exponent over the whole grid (`jaxdyn.sparsity.nupes_layer`);
round-to-nearest (RTN) is data-free; the AdaRound-style baseline learns to round up or down.
Every arm trains the same model from the same seed (bit-identical) and differs only in the
quantizer.
"""

from configs import default
from experiments.claims import Arm, Claim, Expect

METHODS = ("rtn", "nupes", "adaround")
PAPER = ("Yvinec, Dapogny, Bailly, NUPES: Non-Uniform Post-Training Quantization via Power Exponent Search, 2023, "
         "https://arxiv.org/abs/2308.05600")


def quantize(method: str) -> dict:
  return {"name": "quantize_eval", "method": method, "bits": (4, 3), "calibration_size": 256}


def get_config():
  c = default.get_config()
  c.callbacks = (quantize("nupes"),)
  return c


def _claim(bits: int):
  return Claim(
      name=f"nupes_{bits}bit",
      paper=PAPER,
      statement=("Optimising the quantized weights over the whole grid with a searched power exponent keeps more "
                 "accuracy than uniform quantization and than rounding-only post-training methods (AdaRound)."),
      setting=(f"MNIST-1D, the default 1-D CNN trained in float (3,000 Adam steps), every kernel quantized to "
               f"{bits} bits per output channel, 256 calibration signals; test accuracy, mean of 3 seeds."),
      get_config=get_config,
      arms=[Arm(m, {"callbacks": (quantize(m),)}) for m in METHODS],
      metric=f"final_acc_{bits}bit",
      metric_name=f"test accuracy at {bits} bits",
      expects=[Expect("greater", "nupes", "rtn"), Expect("greater", "nupes", "adaround")],
      report={"float accuracy": "final_float_accuracy"},
  )


def get_claims():
  return [_claim(4), _claim(3)]
