"""Faults around a run (issue "Reliability"): each test reproduces a fault seen by a user.

1. A checkpoint folder that cannot be written (read-only, or a disk that fills during a save) ends the
   process with a clear message and exit code 1 within seconds (it used to hang on orbax's threads).
2. A resume with a changed config is refused naming the keys; checkpoints of another config are a
   mismatch, never "damage".
3. A finished run whose results were lost recomputes them from its last checkpoint.
4. After any resume, metrics.jsonl holds each step at most once.
5. The checkpoint metadata is covered by a digest; every restore error falls back to an older step.
6. A workdir is locked by the run that holds it.
7. ``nonfinite="skip"``: the skipped count survives a resume; JSON outputs are strict.
8. Config values that used to be accepted silently are one-line errors naming the key.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from experiments import checkpointing, workdir as workdir_lib
from experiments.config_schema import ConfigError
from experiments.train import train_and_evaluate
from tests.experiments.helpers import Crash, crash, poison_batch, tiny

REPO = pathlib.Path(__file__).resolve().parents[2]


def _tiny(**overrides):
  return tiny(**overrides)


def _steps(workdir):
  return [json.loads(line)["step"] for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished run of `_tiny` (its results dict and workdir); tests copy the workdir."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  return train_and_evaluate(_tiny(), str(workdir)), workdir


def _copy(finished, dst):
  shutil.copytree(finished[1], dst)
  (dst / ".lock").unlink(missing_ok=True)
  return dst


# --- 1. no hang on a checkpoint folder that cannot be written -------------------------------------

def _cli(workdir, *extra):
  """The default config (a 1-D CNN, checkpoints of about 0.5 MB) for 40 steps."""
  return [sys.executable, "-m", "experiments.main", "--config=configs/default.py", f"--workdir={workdir}",
          "--config.num_train_steps=40", "--config.checkpoint_every_steps=10", "--config.log_every_steps=5",
          "--config.eval_every_steps=40", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["read_only", "disk_full"])
def test_unwritable_checkpoints_end_the_process_with_a_message(tmp_path, fault):
  # A real read-only bind mount or a real 300 KB tmpfs, in a private mount namespace (unshare -rm works
  # as root and as an unprivileged user), so the failure comes from the kernel, not from a mock.
  assert shutil.which("unshare"), "util-linux's unshare is needed for this test"
  ck = tmp_path / "checkpoints"
  ck.mkdir()
  mount = (f"mount --bind {ck} {ck} && mount -o remount,bind,ro {ck}" if fault == "read_only"
           else f"mount -t tmpfs -o size=300k tmpfs {ck}")
  cmd = " ".join(f"'{a}'" for a in _cli(tmp_path))
  t0 = time.monotonic()
  out = subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && exec {cmd}"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 1, out.stderr[-2000:]
  fatal = [line for line in out.stderr.splitlines() if line.startswith("FATAL:")]
  reason = "Read-only file system" if fault == "read_only" else "No space left on device"
  assert len(fatal) == 1 and f"checkpoints: cannot write to {ck}" in fatal[0] and reason in fatal[0], fatal
  assert time.monotonic() - t0 < 240


def test_a_failing_save_raises_and_releases_the_workdir(tmp_path, monkeypatch):
  def fail(self, *a, **k):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))

  monkeypatch.setattr(checkpointing.ocp.CheckpointManager, "save", fail)
  with pytest.raises(checkpointing.CheckpointWriteError, match="Read-only file system"):
    train_and_evaluate(_tiny(), str(tmp_path))
  monkeypatch.undo()
  workdir_lib.WorkdirLock(tmp_path).release()  # the failed run let go of the lock


# --- 2. a changed config is refused, never mixed ---------------------------------------------------

@pytest.mark.parametrize("key,value,named", [
    ("seed", 3, "seed 0 -> 3"),
    ("optimizer.learning_rate", 0.5, "optimizer.learning_rate 0.003 -> 0.5"),
    ("model_kwargs.hidden", (32,), "model_kwargs.hidden [16] -> [32]"),
    ("dataset", "digits", "dataset 'mnist1d' -> 'digits'"),
    ("num_train_steps", 30, "num_train_steps 20 -> 30"),  # the cosine schedule decays over it
])
def test_resume_with_a_changed_config_is_refused_naming_the_keys(tmp_path, finished, key, value, named):
  first = finished[0]
  tmp_path = _copy(finished, tmp_path / "run")
  before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
  c = _tiny()
  *parents, leaf = key.split(".")
  node = c
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ConfigError, match="holds a run with a different configuration") as info:
    train_and_evaluate(c, str(tmp_path))
  assert named in str(info.value) and "another --workdir" in str(info.value)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before  # nothing set aside
  assert json.loads((tmp_path / "results.json").read_text())["eval_loss"] == first["eval_loss"]
  assert _steps(tmp_path) == sorted(set(_steps(tmp_path)))


def test_neutral_changes_resume_and_more_steps_extend_a_constant_schedule(tmp_path):
  constant = {"schedule": "constant"}
  c = _tiny(num_train_steps=10)
  c.optimizer.update(constant)
  train_and_evaluate(c, str(tmp_path))
  c = _tiny(num_train_steps=20, log_every_steps=2, eval_every_steps=4)
  c.optimizer.update(constant)
  res = train_and_evaluate(c, str(tmp_path))
  assert res["steps"] == 20
  full = _tiny(num_train_steps=20)
  full.optimizer.update(constant)
  assert res["eval_loss"] == train_and_evaluate(full, str(tmp_path / "full"))["eval_loss"]


def test_checkpoints_of_another_config_are_a_mismatch_not_damage(tmp_path, finished):
  tmp_path = _copy(finished, tmp_path / "run")
  (tmp_path / "config.json").unlink()  # a workdir from before config.json existed
  with pytest.raises(ConfigError, match=r"checkpoint at step 20 .* another model, optimizer or data"):
    train_and_evaluate(_tiny(model_kwargs={"hidden": (24,), "dropout_rate": 0.0}), str(tmp_path))
  assert not list((tmp_path / "checkpoints").glob("damaged_*"))


# --- 3. results recomputed after a late crash ------------------------------------------------------

def test_results_lost_after_the_last_checkpoint_are_recomputed(tmp_path, finished, capsys):
  full = finished[0]
  with pytest.raises(Crash):
    train_and_evaluate(_tiny(callbacks=crash(at_end=True)), str(tmp_path / "late"))
  assert not (tmp_path / "late" / "results.json").exists()
  res = train_and_evaluate(_tiny(), str(tmp_path / "late"))
  assert "results are missing; recomputing them" in capsys.readouterr().out
  for k in ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy", "steps", "skipped_updates"):
    assert res[k] == full[k], k
  _copy(finished, tmp_path / "full")
  (tmp_path / "full" / "results.json").unlink()  # deleted by hand
  again = train_and_evaluate(_tiny(), str(tmp_path / "full"))
  assert again["eval_loss"] == full["eval_loss"] and again["train_loss"] == full["train_loss"]


# --- 4. no duplicated history ----------------------------------------------------------------------

def test_crash_before_the_first_checkpoint_leaves_no_duplicate_steps(tmp_path, finished):
  full = finished[0]
  with pytest.raises(Crash):
    train_and_evaluate(_tiny(callbacks=crash(step=7), checkpoint_every_steps=10, log_every_steps=1),
                       str(tmp_path / "r"))  # crashes before the first checkpoint (step 10)
  assert not (tmp_path / "r" / "checkpoints" / "10").exists() and _steps(tmp_path / "r")
  res = train_and_evaluate(_tiny(), str(tmp_path / "r"))
  assert _steps(tmp_path / "r") == _steps(finished[1])
  assert res["eval_loss"] == full["eval_loss"]


def test_every_checkpoint_damaged_restarts_with_a_clean_history(tmp_path, finished):
  tmp_path = _copy(finished, tmp_path / "run")
  for step_dir in (tmp_path / "checkpoints").iterdir():
    if step_dir.name.isdigit():
      (step_dir / "meta" / "metadata").write_text("{}")
  (tmp_path / "results.json").unlink()
  with pytest.warns(checkpointing.DamagedCheckpointWarning):
    train_and_evaluate(_tiny(), str(tmp_path))
  assert _steps(tmp_path) == sorted(set(_steps(tmp_path)))


# --- 5. checkpoint metadata covered, every restore error falls back --------------------------------

def _meta_path(step_dir):
  return step_dir / "meta" / "metadata"


def _edit_meta(step_dir, fn):
  path = _meta_path(step_dir)
  meta = json.loads(path.read_text())
  fn(meta)
  path.write_text(json.dumps(meta))


DAMAGE = {
    "iterator_moved": lambda d: _edit_meta(d, lambda m: m["data"].update(next_index=m["data"]["next_index"] + 3)),
    "field_removed": lambda d: _edit_meta(d, lambda m: m.pop("elapsed_s")),
    "field_garbage": lambda d: _edit_meta(d, lambda m: m.update(data="garbage")),
    "checkpoint_metadata_garbage": lambda d: (d / "_CHECKPOINT_METADATA").write_text(
        '{"init_timestamp_nsecs": "abc", "commit_timestamp_nsecs": []}'),
    "checkpoint_metadata_list": lambda d: (d / "_CHECKPOINT_METADATA").write_text("[]"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_metadata_falls_back_to_the_previous_checkpoint(tmp_path, finished, damage, capsys):
  expected = finished[0]
  _copy(finished, tmp_path / "run")
  (tmp_path / "run" / "results.json").unlink()
  DAMAGE[damage](tmp_path / "run" / "checkpoints" / "20")
  with pytest.warns(checkpointing.DamagedCheckpointWarning, match="Skipping damaged checkpoint at step 20"):
    res = train_and_evaluate(_tiny(), str(tmp_path / "run"))
  assert "Resuming from checkpoint at step 15/20" in capsys.readouterr().out
  assert res["eval_loss"] == expected["eval_loss"]  # the same batches: nothing resumed off position
  assert list((tmp_path / "run" / "checkpoints").glob("damaged_20_*"))


def test_damaged_checkpoint_in_a_folder_that_cannot_be_renamed_still_falls_back(tmp_path, finished, monkeypatch,
                                                                               capsys):
  tmp_path = _copy(finished, tmp_path / "run")
  (tmp_path / "results.json").unlink()
  _edit_meta(tmp_path / "checkpoints" / "20", lambda m: m.pop("data"))
  real_rename = pathlib.Path.rename

  def read_only_rename(self, target):
    if "damaged_" in str(target):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    return real_rename(self, target)

  monkeypatch.setattr(pathlib.Path, "rename", read_only_rename)
  with pytest.warns(checkpointing.DamagedCheckpointWarning, match="left in place: it cannot be moved"):
    res = train_and_evaluate(_tiny(), str(tmp_path))
  assert "Resuming from checkpoint at step 15/20" in capsys.readouterr().out and res["steps"] == 20


# --- 6. the workdir lock ---------------------------------------------------------------------------

def test_a_second_run_on_a_locked_workdir_is_refused(tmp_path):
  lock = workdir_lib.WorkdirLock(tmp_path)
  try:
    with pytest.raises(ConfigError, match=rf"workdir: {tmp_path} is in use by another run \(pid {os.getpid()}\)"):
      train_and_evaluate(_tiny(), str(tmp_path))
  finally:
    lock.release()
  assert not (tmp_path / "checkpoints").exists()
  (tmp_path / ".lock").write_text("999999\n")  # a stale lock file: no process holds it
  assert train_and_evaluate(_tiny(), str(tmp_path))["steps"] == 20


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_released(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", (
      "import pathlib, sys, time\nfrom experiments.workdir import WorkdirLock\n"
      f"WorkdirLock(pathlib.Path({str(tmp_path)!r}))\nprint('locked', flush=True)\ntime.sleep(600)\n")],
      cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  with pytest.raises(ConfigError, match=f"in use by another run \\(pid {holder.pid}\\)"):
    workdir_lib.WorkdirLock(tmp_path)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  workdir_lib.WorkdirLock(tmp_path).release()


# --- 7. nonfinite="skip" reporting -----------------------------------------------------------------

def _strict_json(text):
  def refuse(token):
    raise AssertionError(f"non-standard JSON token {token}")
  return json.loads(text, parse_constant=refuse)


def test_skipped_count_survives_resume_and_outputs_are_strict_json(tmp_path, monkeypatch):
  poison_batch(monkeypatch, 3)
  c = _tiny(objective="nan_on_big_inputs_for_tests", objective_kwargs={}, nonfinite="skip",
            log_every_steps=1)
  crashing = ml_collections.ConfigDict(c.to_dict())
  crashing.callbacks = crash(step=12)
  with pytest.raises(Crash):
    train_and_evaluate(crashing, str(tmp_path))
  res = train_and_evaluate(c, str(tmp_path))
  assert res["skipped_updates"] == 1
  rows = [_strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  step3 = next(r for r in rows if r["step"] == 3 and "train_loss" in r)
  assert step3["train_loss"] is None and step3["nonfinite_steps"] == 1  # null, not a bare NaN token
  assert [r["skipped_updates_total"] for r in rows if "train_loss" in r][-1] == 1
  _strict_json((tmp_path / "results.json").read_text())


# --- 8. config values that used to pass ------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("optimizer.warmup_steps", -5, "config.optimizer.warmup_steps: must be an integer in [0, 20]"),
    ("optimizer.warmup_steps", 50, "config.optimizer.warmup_steps: must be an integer in [0, 20]"),
    ("optimizer.schedule", "piecewise", None),
    ("progress_every_seconds", float("nan"), "config.progress_every_seconds: must be a finite number > 0"),
    ("optimizer.learning_rate", float("inf"), "config.optimizer.learning_rate: must be a finite number > 0"),
    ("objective_kwargs.label_smoothing", 1.5, "config.objective_kwargs.label_smoothing (ce): must be"),
    ("optimizer.decay", -0.1, "config.optimizer.decay: must be a finite number > 0"),
    ("objective_kwargs", {"rate": 1.5}, "config.objective_kwargs.rate (msd): must be"),
])
def test_bad_config_values_are_one_line_errors_naming_the_key(tmp_path, key, value, message):
  c = _tiny()
  if key == "optimizer.schedule":  # negative piecewise boundaries
    c.optimizer.schedule, c.optimizer.boundaries = "piecewise", (-3, 10)
    message = "config.optimizer.boundaries: must be increasing steps in [1, num_train_steps=20], got (-3, 10)"
  elif key == "objective_kwargs":
    c.objective, c.objective_kwargs = "msd", value
  else:
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  with pytest.raises(ConfigError) as info:
    train_and_evaluate(c, str(tmp_path / "w"))
  assert str(info.value).startswith(message) and "\n" not in str(info.value), str(info.value)
  assert not (tmp_path / "w").exists()  # nothing was created


def test_a_save_keeps_the_metadata_as_it_was_when_called(tmp_path, monkeypatch):
  """The write runs in the background: a log the caller keeps appending to must be saved as it stood."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=2)
  handed = []
  real_save = ckpt.manager.save
  monkeypatch.setattr(ckpt.manager, "save", lambda step, args: handed.append(args) or real_save(step, args=args))
  log = [{"step": 1}]
  ckpt.save(1, {"w": jnp.ones(3)}, {"data": {}, "elapsed_s": 0.0, "log": log})
  log.append({"step": 2})  # the caller goes on before the write has happened
  assert handed[0]["meta"].item["log"] == [{"step": 1}]
  ckpt.manager.wait_until_finished()
  assert ckpt.restore_latest({"w": jnp.zeros(3)}).meta["log"] == [{"step": 1}]
