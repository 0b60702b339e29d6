"""Crashes and damaged checkpoints: a killed run resumes exactly; a damaged checkpoint is skipped."""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import default
from experiments import checkpointing
from experiments.train import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = 120


def _final_state(workdir):
  with ocp.CheckpointManager(pathlib.Path(workdir, "checkpoints").absolute()) as m:
    step = m.latest_step()
    tree = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  return step, jax.tree.leaves(tree)


def _cmd(workdir):
  return [sys.executable, "-m", "experiments.main", "--config=configs/default.py", f"--workdir={workdir}",
          f"--config.num_train_steps={STEPS}", "--config.log_every_steps=1", "--config.eval_every_steps=80",
          "--config.checkpoint_every_steps=20", "--config.max_checkpoints=2"]


def _logged_step(workdir):
  path = pathlib.Path(workdir, "metrics.jsonl")
  if not path.exists():
    return 0
  lines = path.read_text().splitlines()
  for line in reversed(lines):
    try:
      return json.loads(line)["step"]
    except json.JSONDecodeError:
      continue
  return 0


@pytest.mark.slow
def test_sigkill_at_three_random_steps_then_resume_equals_uninterrupted_run(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  full = tmp_path / "full"
  subprocess.run(_cmd(full), cwd=REPO, env=env, check=True, capture_output=True, timeout=600)

  killed = tmp_path / "killed"
  targets = sorted(random.Random(os.getpid()).sample(range(25, STEPS - 20), 3))
  reached = []
  for target in targets:
    proc = subprocess.Popen(_cmd(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _logged_step(killed) < target and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.002)
    assert proc.poll() is None, f"the run ended before step {target}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reached.append(_logged_step(killed))
  assert all(r < STEPS for r in reached), reached
  out = subprocess.run(_cmd(killed), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Resuming from checkpoint at step" in out.stdout

  s1, a = _final_state(full)
  s2, b = _final_state(killed)
  assert s1 == s2 == STEPS
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  r1 = json.loads((full / "results.json").read_text())
  r2 = json.loads((killed / "results.json").read_text())
  assert r1["eval_loss"] == r2["eval_loss"] and r1["train_loss"] == r2["train_loss"]
  steps = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines()]
  assert steps == [json.loads(l)["step"] for l in (full / "metrics.jsonl").read_text().splitlines()]


def _tiny():
  c = default.get_config()
  c.model, c.model_kwargs = "mlp", {"hidden": (16,), "dropout_rate": 0.0}
  c.batch_size, c.num_train_steps = 32, 20
  c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 5, 10, 5
  return c


def _largest_data_file(step_dir):
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "ocdbt.process" in str(p)]
  return max(files, key=lambda p: p.stat().st_size)


def _flip_bytes(path):
  # Every data file of the step, every 64th byte: array bytes are hit wherever the store put them.
  for f in (p for p in path.parent.glob("*") if p.is_file()):
    data = bytearray(f.read_bytes())
    for i in range(0, len(data), 64):
      data[i] ^= 0xFF
    f.write_bytes(bytes(data))


def _truncate(path):
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _garbage_metadata(step_dir):
  (step_dir / "state" / "_METADATA").write_text("{not json")


@pytest.mark.parametrize("damage", [_flip_bytes, _truncate, _garbage_metadata], ids=["flip", "truncate", "metadata"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, capsys):
  wd = tmp_path / "run"
  train_and_evaluate(_tiny(), str(wd))
  _, expected = _final_state(wd)
  step_dir = wd / "checkpoints" / "20"
  damage(step_dir if damage is _garbage_metadata else _largest_data_file(step_dir))
  with pytest.warns(checkpointing.DamagedCheckpointWarning, match="Skipping damaged checkpoint at step 20"):
    res = train_and_evaluate(_tiny(), str(wd))
  assert "Resuming from checkpoint at step 15/20" in capsys.readouterr().out
  assert res["steps"] == 20
  assert list((wd / "checkpoints").glob("damaged_20_*"))
  _, again = _final_state(wd)
  for x, y in zip(expected, again):  # the retrained steps 16..20 give the same state
    np.testing.assert_array_equal(x, y)


def test_fingerprint_changes_with_any_entry():
  tree = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, np.int32)}
  base = [int(v) for v in checkpointing.fingerprint(tree)]
  flipped = dict(tree, a=tree["a"].copy())
  flipped["a"][2, 3] = np.nextafter(flipped["a"][2, 3], np.float32(100))
  assert [int(v) for v in checkpointing.fingerprint(flipped)][0] != base[0]
  swapped = dict(tree, a=tree["a"][::-1].copy())
  assert [int(v) for v in checkpointing.fingerprint(swapped)][0] != base[0]
