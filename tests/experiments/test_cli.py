"""What a new user meets first: the command line, the progress line, TensorBoard, packaging."""

from __future__ import annotations

import json
import pathlib
import re
import struct
import subprocess
import sys
import zipfile

import optax
import pytest

from experiments.train import train_and_evaluate
from tests.experiments.helpers import tiny

REPO = pathlib.Path(__file__).resolve().parents[2]


def _tiny(**overrides):
  return tiny(**{"checkpoint_every_steps": 10, **overrides})


def _events(workdir):
  """``{tag: {step: value}}`` from the run's TensorBoard event files (TFRecord framing, Event protos)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted((pathlib.Path(workdir) / "tensorboard").glob("events.out.tfevents.*")):
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for v in event.summary.value:
        out.setdefault(v.tag, {})[event.step] = v.simple_value
  return out


def test_progress_eta_excludes_compilation_and_eval_is_printed(tmp_path, capsys):
  train_and_evaluate(_tiny(progress_every_seconds=1e-3), str(tmp_path))
  out = capsys.readouterr().out
  etas = re.findall(r"ETA (\d+):(\d\d):(\d\d)", out)
  assert etas, out
  h, m, s = map(int, etas[0])
  assert 3600 * h + 60 * m + s <= 10, out  # a 20-step run: compilation is not in the rate
  assert re.search(r"eval at step 10/20: loss \d+\.\d{4}, accuracy \d\.\d{4}", out), out


def test_tensorboard_gets_learning_rate_and_steps_per_sec_and_config_json_is_saved(tmp_path):
  train_and_evaluate(_tiny(), str(tmp_path))
  events = _events(tmp_path)
  for tag in ("train_loss", "eval_accuracy", "learning_rate", "steps_per_sec"):
    assert tag in events, sorted(events)
  schedule = optax.cosine_decay_schedule(3e-3, 20)
  for step, lr in events["learning_rate"].items():
    assert lr == pytest.approx(float(schedule(step - 1)), rel=1e-5)  # the rate of the step's update
  assert all(v > 0 for v in events["steps_per_sec"].values())
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["config"]["model_kwargs"] == {"hidden": [16], "dropout_rate": 0.1}
  assert saved["derived"] == {"objective": {}, "transforms": {}, "lr_schedule_steps": 20}


def _main(workdir, *args, config="configs/default.py"):
  cmd = [sys.executable, "-m", "experiments.main", f"--config={config}", f"--workdir={workdir}", *args]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_configuration_errors_are_one_line_with_exit_code_2(tmp_path):
  out = _main(tmp_path / "a", "--config.objective_kwargs.label_smoothing=1.5")
  assert out.returncode == 2, out.stderr
  assert out.stderr.strip().splitlines() == [
      "FATAL: config.objective_kwargs.label_smoothing (ce): must be a finite real number in [0, 1), got 1.5"]
  assert not (tmp_path / "a").exists()
  out = _main(tmp_path / "b", "--config.optimizer.learning_rat=0.1")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "FATAL: config: unknown key 'learning_rat' in --config.optimizer.learning_rat; did you mean "
      "\"learning_rate\" instead of \"learning_rat\"?"]


@pytest.mark.slow
def test_tuples_from_the_command_line_and_switching_the_objective(tmp_path):
  # msd_mnist1d.py sets objective_kwargs for msd; switching to ce needs no objective_kwargs={} by hand.
  out = _main(tmp_path, "--config.objective=ce", "--config.callbacks=train_step_memory",
              '--config.transforms=({"name": "clip_by_global_norm", "max_norm": 1.0},)',
              "--config.num_train_steps=4", "--config.log_every_steps=2", "--config.eval_every_steps=4",
              "--config.checkpoint_every_steps=4", config="configs/msd_mnist1d.py")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "note: --config.objective=ce without --config.objective_kwargs" in out.stderr
  saved = json.loads((tmp_path / "config.json").read_text())["config"]
  assert saved["objective"] == "ce" and saved["objective_kwargs"] == {}
  assert saved["transforms"] == [{"name": "clip_by_global_norm", "max_norm": 1.0}]
  assert json.loads((tmp_path / "results.json").read_text())["final_temp_bytes"] > 0


@pytest.mark.slow
def test_the_wheel_installs_only_the_library(tmp_path):
  out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  (wheel,) = tmp_path.glob("jaxdyn-*.whl")
  tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
  assert {t for t in tops if not t.endswith(".dist-info")} == {"jaxdyn"}, tops


def test_writing_plots_leaves_the_matplotlib_backend_alone(tmp_path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  from experiments import metrics_io  # pylint: disable=g-import-not-at-top
  from experiments.techniques.dynamics import plot_dynamics  # pylint: disable=g-import-not-at-top
  before = matplotlib.get_backend()
  matplotlib.use("svg")  # stands in for a notebook's inline backend
  try:
    metrics_io.plot_learning_curves([{"step": 1, "train_loss": 1.0}, {"step": 2, "eval_loss": None}],
                                    tmp_path / "c.png")
    plot_dynamics({"a": [{"step": 0, "dse": 1.0, "dsmi_zy": 0.1, "dsmi_zx": 0.2}]}, tmp_path / "d.png")
    assert matplotlib.get_backend() == "svg"
  finally:
    matplotlib.use(before)
  assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "d.png").stat().st_size > 0
