"""Two CPU processes through jax.distributed give the single-process result."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = 30


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _args(workdir):
  return [sys.executable, "-m", "experiments.main", "--config=configs/default.py", f"--workdir={workdir}",
          f"--config.num_train_steps={STEPS}", "--config.log_every_steps=1", f"--config.eval_every_steps={STEPS}",
          "--config.checkpoint_every_steps=10"]


def _losses(workdir):
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return np.array([r["train_loss"] for r in rows if "train_loss" in r])


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  single = tmp_path / "single"
  out = subprocess.run(_args(single), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]

  multi = tmp_path / "multi"
  port = _free_port()
  procs = [subprocess.Popen(_args(multi) + [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                                           f"--process_id={i}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (o, e) in zip(procs, outs):
    assert p.returncode == 0, e[-3000:]
  # Process 0 alone wrote the logs and results; both took part in the checkpoints.
  assert "Results" in outs[0][0] and "Results" not in outs[1][0]
  assert sorted(p.name for p in (multi / "checkpoints").iterdir() if p.name.isdigit()) == ["10", "20", "30"]
  np.testing.assert_allclose(_losses(multi), _losses(single), rtol=0, atol=1e-5)
  r1 = json.loads((single / "results.json").read_text())
  r2 = json.loads((multi / "results.json").read_text())
  assert abs(r1["eval_loss"] - r2["eval_loss"]) < 1e-5 and r1["eval_accuracy"] == r2["eval_accuracy"]
