"""Every config in configs/ trains for a few steps on tiny data, and every declared claim is well formed."""

import importlib
import pathlib

import ml_collections
import pytest
import tensorflow_datasets as tfds

from experiments import claims as claims_lib
from experiments import repro
from experiments.train import train_and_evaluate

CONFIGS = sorted(p.stem for p in pathlib.Path(__file__).parents[2].joinpath("configs").glob("*.py")
                 if not p.name.startswith("_"))


def shrink(config):
  """The config's own model, objective and optimizer; a handful of steps and small batches.

  Deep models keep their block type but get one block in each of two stages (ResNets) or one
  transformer block (ViT), and fixed-depth models (the spiking ResNet-18) a width of 2
  and 2 time steps: XLA:CPU takes minutes to compile a full ResNet step, and width and depth add no
  code path (tests/models, tests/snn and tests/bayes cover the full architectures).
  """
  if config.model in ("resnet18", "resnet50", "gated_resnet18", "bayes_resnet18"):
    config.model_kwargs.stage_sizes = (1, 1)
    config.model_kwargs.width = 8
  elif config.model == "vit":
    config.model_kwargs.depth = 1
  elif "width" in config.model_kwargs:
    config.model_kwargs.width = 2
  if "num_steps" in config.model_kwargs:
    config.model_kwargs.num_steps = 2
  config.num_train_steps = 3
  if config.optimizer.schedule == "piecewise":  # the boundaries of the full run, squeezed into 3 steps
    config.optimizer.boundaries = tuple(range(1, 1 + len(config.optimizer.boundaries)))
  config.batch_size = min(config.batch_size, 16)
  config.eval_batch_size = min(config.eval_batch_size, 64)
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 3
  callbacks = []
  for cb in config.callbacks:
    cb = {"name": cb} if isinstance(cb, str) else dict(cb)
    if "every_steps" in cb:
      cb["every_steps"] = 3
    if "probe_size" in cb:  # measurement callbacks: a small probe (their own tests check the numbers)
      cb["probe_size"] = 64
    if cb.get("name") == "quantize_eval":  # one bit width, a few optimisation steps, a small calibration set
      cb.update(bits=tuple(cb.get("bits", (4,)))[:1], steps=2, calibration_size=32)
      if "resnet" in config.model:  # one NUPES compile per layer shape takes most of a minute on a ResNet;
        cb["method"] = "rtn"        # the layer walk is the same (NUPES on it: tests/experiments/techniques)
    if "num_samples" in cb:  # Monte Carlo predictions: two samples take the same code path as ten
      cb["num_samples"] = 2
    if "calibration_size" in cb:
      cb["calibration_size"] = min(cb["calibration_size"], 32)
    if "finetune_steps" in cb:
      cb["finetune_steps"] = 2
    callbacks.append(cb)
  config.callbacks = tuple(callbacks)
  return config


@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_a_few_steps(name, tmp_path):
  mod = importlib.import_module(f"configs.{name}")
  if hasattr(mod, "smoke_config"):  # a measurement run by its own runner (RUNNER), not a training run
    res = mod.RUNNER(mod.smoke_config(), str(tmp_path))
    assert res and all(v == v for v in res.values() if isinstance(v, float))  # no NaN
    assert mod.RUNNER(mod.smoke_config(), str(tmp_path)) == res  # the second call reads results.json
    return
  config = shrink(mod.get_config())
  if config.dataset.startswith("tfds:"):
    with tfds.testing.mock_data(num_examples=64):
      res = train_and_evaluate(config, str(tmp_path))
  else:
    res = train_and_evaluate(config, str(tmp_path))
  assert res["steps"] == 3 and res["eval_loss"] is not None


def test_claims_are_declared_and_their_arms_apply():
  found = repro.discover()
  assert "mnist1d_cnn_beats_mlp" in found
  for claim in found.values():
    for arm in claim.arms:
      claims_lib.apply_overrides(claim.get_config(), arm.overrides)


def test_report_sections_are_replaced_in_place(tmp_path):
  path = tmp_path / "R.md"
  repro.update_report(path, "a", "<!-- claim:a -->\nA1\n<!-- /claim:a -->\n")
  repro.update_report(path, "b", "<!-- claim:b -->\nB1\n<!-- /claim:b -->\n")
  repro.update_report(path, "a", "<!-- claim:a -->\nA2\n<!-- /claim:a -->\n")
  text = path.read_text()
  assert "A2" in text and "A1" not in text and "B1" in text and text.index("A2") < text.index("B1")


def test_report_cells():
  nan, inf = float("nan"), float("inf")
  assert repro._fmt([1.0, 3.0]) == "2 ± 1.4"
  assert repro._fmt([nan, nan, nan]) == "—"  # a column that this arm does not have
  assert repro._fmt([1.0, nan]) == "1 / nan"
  assert repro._fmt([1.0, inf]) == "1 / never"


def test_expectations():
  means = {"x": 0.9, "y": 0.7}
  assert claims_lib.Expect("greater", "x", "y", 0.1).holds(means)
  assert not claims_lib.Expect("greater", "x", "y", 0.3).holds(means)
  assert claims_lib.Expect("less", "y", "x").holds(means)
  assert claims_lib.Expect("within", "x", "y", 0.25).holds(means)
  assert not claims_lib.Expect("within", "x", "y", 0.1).holds(means)
  assert claims_lib.Expect("at_least", "y", "x", 0.2).holds(means)  # at most 0.2 worse
  assert not claims_lib.Expect("at_least", "y", "x", 0.1).holds(means)
  assert claims_lib.Expect("at_least", "x", "y").holds(means)
  assert claims_lib.Expect("at_least", "y", "x", 0.01).describe("acc") == "acc(y) >= acc(x) - 0.01"
  with pytest.raises(ValueError, match="kind"):
    claims_lib.Expect("bigger", "x", "y")
  assert claims_lib.Expect("above", "x", value=0.85).holds(means)
  assert not claims_lib.Expect("above", "y", value=0.85).holds(means)
  assert claims_lib.Expect("below", "y", value=0.75).holds(means)
  assert claims_lib.Expect("below", "y", value=0.75).describe("R2") == "R2(y) < 0.75"
  with pytest.raises(ValueError, match="^value:"):
    claims_lib.Expect("above", "x", "y", value=0.5)
  with pytest.raises(ValueError, match="^b:"):
    claims_lib.Expect("less", "x")
  with pytest.raises(ValueError, match="overrides: unknown config key 'optimizer.lr'"):
    claims_lib.apply_overrides(repro.discover()["mnist1d_cnn_beats_mlp"].get_config(), {"optimizer.lr": 1})
  steps = claims_lib.steps_to("eval_accuracy", 0.8)
  assert steps({"history": [{"step": 5, "eval_accuracy": 0.5}, {"step": 10, "eval_accuracy": 0.85}]}) == 10
  assert steps({"history": [{"step": 5, "eval_accuracy": 0.5}]}) == float("inf")


def test_run_claim_and_render_end_to_end(tmp_path):
  from configs import default

  def tiny():
    c = shrink(default.get_config())
    c.model, c.model_kwargs = "mlp", {"hidden": (16,), "dropout_rate": 0.0}
    return c

  claim = claims_lib.Claim(
      name="tiny", paper="p", statement="s", setting="t", get_config=tiny,
      arms=[claims_lib.Arm("lr_hi", {"optimizer.learning_rate": 1e-2}),
            claims_lib.Arm("lr_zero", {"optimizer.learning_rate": 1e-12})],
      metric="train_loss", metric_name="train loss",
      expects=[claims_lib.Expect("less", "lr_hi", "lr_zero"), claims_lib.Expect("greater", "lr_hi", "lr_zero")],
      seeds=(0, 1), report={"acc": "eval_accuracy", "loss again": "train_loss"})
  outcome = repro.run_claim(claim, tmp_path)
  assert [len(v["values"]) for v in outcome["per_arm"].values()] == [2, 2]
  text = repro.render(claim, outcome)
  # Exactly one of two opposite expectations holds, so the claim as a whole does not.
  assert "DOES NOT HOLD" in text and text.count("- holds:") == 1 and text.count("does NOT hold") == 1
  assert "| lr_hi |" in text and "| lr_zero |" in text and "UTC on" in text
  assert "| arm | train loss | acc | per seed |" in text  # the column repeating the metric is left out
  # Seeds of one arm share a config hash; each seed has its own workdir.
  assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["lr_hi", "lr_zero"]
  assert outcome["untimed_runs"] == 0 and outcome["train_seconds"] > 0
  # A claim re-run reads the finished runs back: its line says how long they took when they ran.
  again = repro.run_claim(claim, tmp_path)
  assert again["train_seconds"] == outcome["train_seconds"]
  assert f"their training took {again['train_seconds'] / 60:.1f} min)" in repro.render(claim, {**again, "seconds": 0.0})


def test_shared_run_computes_once_per_seed_for_every_arm(tmp_path):
  from experiments.claims import shared_run
  calls = []

  def run_all(config):
    calls.append(config.seed)
    return {"per_arm": {"a": {"x": 1}, "b": {"x": 2}}, "seed": config.seed}

  def config(arm, seed=0, width=8):
    c = ml_collections.ConfigDict({"seed": seed, "model": {"width": width}, "exp": {"arm": arm, "share_runs": True}})
    return c

  kw = dict(prefix="toy", arm_keys=("exp.arm",), share=True)
  ra, pa = shared_run(run_all, config("a"), str(tmp_path / "runs" / "a" / "seed0"), **kw)
  rb, pb = shared_run(run_all, config("b"), str(tmp_path / "runs" / "b" / "seed0"), **kw)
  assert calls == [0] and ra == rb and pa == pb and pa.parent.name == "seed0"
  assert pa.parent.parent.name.startswith("toy-shared-") and pa.parent.parent.parent == tmp_path / "runs"
  _, p1 = shared_run(run_all, config("a", seed=1), str(tmp_path / "runs" / "a" / "seed1"), **kw)
  _, pw = shared_run(run_all, config("a", width=16), str(tmp_path / "runs" / "a" / "seed0"), **kw)
  assert calls == [0, 1, 0] and p1.parent.name == "seed1" and pw.parent.parent != pa.parent.parent
  _, ps = shared_run(run_all, config("a"), str(tmp_path / "solo"), prefix="toy", arm_keys=("exp.arm",), share=False)
  assert ps == tmp_path / "solo" / "shared" / "results.json" and calls == [0, 1, 0, 0]


def test_one_arm_checks_the_arm_merges_its_results_and_passes_a_checkpoint_folder(tmp_path):
  from experiments.claims import one_arm
  folders = []

  def run_all(config, checkpoint_dir=None):
    folders.append(checkpoint_dir)
    (checkpoint_dir / "1").mkdir(parents=True)  # what a checkpointing loop leaves behind
    return {"per_arm": {"a": {"x": 1}, "b": {"x": 2}}, "history": [1, 2], "seconds": 3.0}

  def config(arm):
    return ml_collections.ConfigDict({"seed": 0, "exp": {"arm": arm, "share_runs": True}})

  kw = dict(arm_key="exp.arm", arms=("a", "b"), prefix="toy", drop=("history",), checkpoints=True)
  out = one_arm(run_all, config("b"), str(tmp_path / "runs" / "b" / "seed0"), **kw)
  path = tmp_path / "runs" / out["shared_results"].split("/runs/")[1]
  assert out == {"seconds": 3.0, "x": 2, "arm": "b", "shared_results": str(path)}
  assert folders == [path.parent / "checkpoints"] and not folders[0].exists()  # removed once results are written
  assert one_arm(run_all, config("a"), str(tmp_path / "runs" / "a" / "seed0"), **kw)["x"] == 1 and len(folders) == 1
  with pytest.raises(ValueError, match=r"exp.arm: must be one of \['a', 'b'\], got 'c'"):
    one_arm(run_all, config("c"), str(tmp_path / "runs" / "c" / "seed0"), **kw)
