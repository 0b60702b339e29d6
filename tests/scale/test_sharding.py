"""Data parallelism and FSDP on 8 forced CPU devices give the 1-device loss trajectory (a GraNet run)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from experiments import sharding

REPO = pathlib.Path(__file__).resolve().parents[2]

_RUN = """
import json, sys, jax
from configs import default
from experiments.train import train_and_evaluate
c = default.get_config()
c.num_train_steps = 50
c.log_every_steps = 1
c.eval_every_steps = 50
c.checkpoint_every_steps = 50
c.sharding = sys.argv[2]
# A sparse run: GraNet's masks and moments are sharded like the params under fsdp.
c.transforms = ({"name": "granet", "final_density": 0.2, "update_every": 10, "end_fraction": 0.8},)
c.callbacks = ({"name": "sparsity_eval", "every_steps": 10},)
res = train_and_evaluate(c, sys.argv[1])
print(json.dumps({"devices": jax.device_count(), "eval_loss": res["eval_loss"],
                  "density": res.get("final_density")}))
"""


def _run(tmp_path, devices, mode):
  wd = tmp_path / f"{devices}_{mode}"
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _RUN, str(wd), mode], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  info = json.loads(out.stdout.strip().splitlines()[-1])
  assert info["devices"] == devices
  rows = [json.loads(l) for l in (wd / "metrics.jsonl").read_text().splitlines()]
  losses = [r["train_loss"] for r in rows if "train_loss" in r]
  assert len(losses) == 50
  return np.array(losses), info["eval_loss"], info["density"]


@pytest.mark.slow
def test_one_device_equals_eight_devices_data_parallel_and_fsdp(tmp_path):
  # 8 devices sum the gradient in another order than 1: float32 rounding differs in the last bits, and
  # training amplifies it step by step (measured: < 1e-6 up to step 10, ~1e-4 by step 30, depending on
  # the CPU's vector units). A real sharding bug (a sum instead of a mean, a replicated batch) is off
  # by orders of magnitude from the first step.
  # The runs train with GraNet (mask updates at steps 10, 20, 30, 40 rank magnitudes across all
  # shards), so the masks and the sparse optimizer state are sharded too; they end at one density.
  base, base_eval, base_density = _run(tmp_path, 1, "data")
  assert abs(base_density - 0.2) < 1e-3
  for mode in ("data", "fsdp"):
    losses, ev, density = _run(tmp_path, 8, mode)
    np.testing.assert_allclose(losses[:10], base[:10], rtol=0, atol=1e-5, err_msg=mode)
    np.testing.assert_allclose(losses, base, rtol=1e-3, atol=0, err_msg=mode)
    np.testing.assert_allclose(ev, base_eval, rtol=1e-3, atol=0, err_msg=mode)
    assert density == base_density, mode


def test_fsdp_spec_splits_the_largest_divisible_axis():
  from jax.sharding import PartitionSpec as P
  assert sharding.fsdp_spec((3, 3, 32, 64), 8) == P(None, None, None, "data")
  assert sharding.fsdp_spec((40, 7), 8) == P("data", None)
  assert sharding.fsdp_spec((7, 5), 8) == P()
  assert sharding.fsdp_spec((), 8) == P()
  assert sharding.fsdp_spec((64,), 1) == P()

