"""The harness: resume, outputs, validation, non-finite handling."""

import json

import jax
import numpy as np
import pytest

from configs import default
from experiments import registry
from experiments.train import train_and_evaluate
from tests.experiments.helpers import Crash, crash, poison_batch, tiny


def _tiny(**overrides):
  return tiny(progress_every_seconds=1e-3, **overrides)


def _final_params(workdir):
  import orbax.checkpoint as ocp
  with ocp.CheckpointManager(workdir / "checkpoints") as m:
    step = m.latest_step()
    tree = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  return step, jax.tree.leaves(tree["params"]), jax.tree.leaves(tree["opt_state"])


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path, capsys):
  full = train_and_evaluate(_tiny(), str(tmp_path / "full"))
  crashed = _tiny(callbacks=crash(step=13))
  with pytest.raises(Crash):
    train_and_evaluate(crashed, str(tmp_path / "resumed"))
  resumed = train_and_evaluate(_tiny(), str(tmp_path / "resumed"))
  assert "Resuming from checkpoint at step 10/20" in capsys.readouterr().out
  s1, p1, o1 = _final_params(tmp_path / "full")
  s2, p2, o2 = _final_params(tmp_path / "resumed")
  assert s1 == s2 == 20
  for a, b in zip(p1 + o1, p2 + o2):
    np.testing.assert_array_equal(a, b)
  assert full["eval_accuracy"] == resumed["eval_accuracy"]
  # The metrics file holds each logged step once, as the uninterrupted run's does.
  steps = [json.loads(l)["step"] for l in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
  assert steps == [json.loads(l)["step"] for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]


def test_outputs_and_finished_run_is_reported_not_repeated(tmp_path, capsys):
  wd = tmp_path / "run"
  res = train_and_evaluate(_tiny(), str(wd))
  for f in ("metrics.jsonl", "results.json", "results.md", "learning_curves.png"):
    assert (wd / f).exists(), f
  assert list((wd / "tensorboard").glob("events.out.tfevents.*"))
  assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [10, 15, 20]
  out = capsys.readouterr().out
  assert "| eval accuracy |" in out and "steps/s" in out and "ETA" in out
  again = train_and_evaluate(_tiny(), str(wd))
  assert "already finished at step 20" in capsys.readouterr().out
  assert again == json.loads((wd / "results.json").read_text()) and again["steps"] == res["steps"]


def test_default_config_learns_mnist1d_well_above_chance(tmp_path):
  c = default.get_config()
  c.num_train_steps = 400
  c.eval_every_steps = 400
  res = train_and_evaluate(c, str(tmp_path))
  assert res["eval_accuracy"] > 0.5  # chance is 0.1


@pytest.mark.parametrize("key,value,match", [
    ("num_train_steps", -5, "config.num_train_steps: must be an integer >= 1"),
    ("batch_size", 0, "config.batch_size"),
    ("model", "resnet9000", "config.model: unknown model 'resnet9000'"),
    ("dataset", "imagenet42", "config.dataset: unknown dataset 'imagenet42'"),
    ("objective", "nope", "config.objective: unknown objective 'nope'"),
    ("nonfinite", "ignore", "config.nonfinite"),
    ("augment", "cutout", "config.augment: must be one of"),
])
def test_bad_values_fail_before_training(tmp_path, key, value, match):
  c = _tiny()
  c[key] = value
  with pytest.raises(ValueError, match=match):
    train_and_evaluate(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()  # failed before touching the workdir


def test_unknown_keys_fail_before_training(tmp_path):
  c = _tiny()
  c.unlock()
  c.learning_rat = 0.1
  with pytest.raises(ValueError, match=r"config: unknown key\(s\) learning_rat; valid keys are"):
    train_and_evaluate(c, str(tmp_path))
  c = _tiny()
  c.objective_kwargs = {"label_smoothing": 0.1, "smoothing": 0.2}
  with pytest.raises(ValueError, match=r"config.objective_kwargs: objective 'ce' does not take smoothing; it takes "
                                       r"label_smoothing"):
    train_and_evaluate(c, str(tmp_path))


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(ValueError, match="workdir: .* is not writable"):
    train_and_evaluate(_tiny(), str(blocker / "sub"))


def test_nonfinite_fail_names_the_step_and_skip_counts(tmp_path, monkeypatch):
  poison_batch(monkeypatch, 3)
  with pytest.raises(FloatingPointError, match="at step 3"):
    train_and_evaluate(_tiny(objective="nan_on_big_inputs_for_tests", objective_kwargs={}), str(tmp_path / "fail"))
  res = train_and_evaluate(_tiny(objective="nan_on_big_inputs_for_tests", objective_kwargs={},
                                  nonfinite="skip"), str(tmp_path / "skip"))
  assert res["skipped_updates"] == 1 and np.isfinite(res["eval_loss"])
  rows = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
  window = next(r for r in rows if "train_loss" in r and r["step"] == 5)  # steps 1..5, step 3 skipped
  assert window["nonfinite_steps"] == 1 and np.isfinite(window["train_loss"])
  assert [r["skipped_updates_total"] for r in rows if "train_loss" in r][-1] == 1


def test_full_disk_is_a_clear_error_before_training(tmp_path, monkeypatch):
  import os as _os
  real = _os.statvfs

  class _Full:
    def __init__(self, st):
      self.f_frsize = st.f_frsize
      self.f_bavail = 10  # a few blocks left

  monkeypatch.setattr(_os, "statvfs", lambda p: _Full(real(p)))
  with pytest.raises(ValueError, match=r"workdir: only .* MiB free .*No space left on device"):
    train_and_evaluate(_tiny(), str(tmp_path / "w"))
  assert not (tmp_path / "w" / "checkpoints").exists()


_SEEN_TOTAL_STEPS = []


@registry.register("transform", "record_total_steps_for_test")
def _record_total_steps(tx, *, total_steps: int):
  _SEEN_TOTAL_STEPS.append(total_steps)
  return tx


def test_transforms_get_the_runs_total_steps_unless_the_config_sets_them(tmp_path):
  from experiments.optim import build_optimizer  # pylint: disable=g-import-not-at-top
  _SEEN_TOTAL_STEPS.clear()
  c = _tiny(num_train_steps=7)
  c.transforms = ({"name": "record_total_steps_for_test"},)
  train_and_evaluate(c, str(tmp_path))
  assert _SEEN_TOTAL_STEPS == [7]
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["config"]["transforms"] == [{"name": "record_total_steps_for_test", "total_steps": 7}]
  c.transforms = ({"name": "record_total_steps_for_test", "total_steps": 1000},)
  build_optimizer(c)
  assert _SEEN_TOTAL_STEPS == [7, 1000]


@registry.register("objective", "epoch_facts_for_tests")
def _epoch_facts(model, batch, *, key, num_train, steps_per_epoch, num_epochs, scale: float = 1.0):
  from experiments.techniques.common import cross_entropy
  del num_train, steps_per_epoch, num_epochs, scale
  return cross_entropy(model, batch, key=key)


def test_objectives_get_epoch_facts_from_the_run_unless_the_config_sets_them():
  from experiments.train import build  # pylint: disable=g-import-not-at-top
  c = _tiny(num_train_steps=100, batch_size=32, objective="epoch_facts_for_tests")
  c.objective_kwargs = {"scale": 2.0}
  built = build(c)
  n = len(built.dataset.train)  # 4,000 MNIST-1D training signals
  assert dict(built.config.objective_kwargs) == {
      "scale": 2.0, "num_train": n, "steps_per_epoch": n // 32, "num_epochs": -(-100 // (n // 32))}
  c.objective_kwargs = {"num_epochs": 9}
  assert build(c).config.objective_kwargs.num_epochs == 9
