"""``make repro [CLAIM=<name>]``: runs declared claims and writes their sections of REPRODUCTION.md.

Every ``configs/*.py`` with a ``get_claim()`` (or ``get_claims()``) declares its claims. Each arm runs for each seed in its own
workdir under ``runs/repro/<arm>-<config hash>/seed<k>``, so an interrupted ``make repro`` resumes,
claims that share a config share its runs, and a changed config starts afresh. The section of a claim is replaced in place; the other
claims' sections are kept as they were.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import importlib
import json
import os
import pathlib
import platform
import re
import statistics
import sys
import time
import traceback

from absl import app, flags, logging

from experiments import claims as claims_lib
from experiments.config_schema import ConfigError
from experiments.train import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("claim", None, "Run only this claim (default: all).")
flags.DEFINE_string("output", "REPRODUCTION.md", "Report to update.")
flags.DEFINE_string("runs_dir", "runs/repro", "Where the arms' workdirs go.")

HEADER = """# Reproduction report

Written by `make repro` (one claim: `make repro CLAIM=<name>`); never edited by hand. Each section
says when and on what machine it ran. A claim whose direction did not hold says so and stays here.
"""


def discover(configs_dir: str | os.PathLike = "configs") -> dict[str, claims_lib.Claim]:
  found = {}
  for path in sorted(pathlib.Path(configs_dir).glob("*.py")):
    if path.name.startswith("_"):
      continue
    mod = importlib.import_module(f"configs.{path.stem}")
    declared = [mod.get_claim()] if hasattr(mod, "get_claim") else []
    declared += list(mod.get_claims()) if hasattr(mod, "get_claims") else []
    for claim in declared:
      if claim.name in found:
        raise ValueError(f"claim {claim.name!r} is declared twice")
      found[claim.name] = claim
  return found


def machine() -> str:
  import jax  # pylint: disable=g-import-not-at-top

  cpu = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return (f"{os.cpu_count()} cores ({cpu}), {jax.default_backend()} backend, jax {jax.__version__}, "
          f"Python {platform.python_version()}")


def _config_hash(config) -> str:
  """A hash of everything in the config but the seed (the seed names the workdir's last part)."""
  d = config.to_dict()
  d.pop("seed")
  return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_claim(claim: claims_lib.Claim, runs_dir: str | os.PathLike) -> dict:
  t0 = time.monotonic()
  per_arm = {}
  # The runs' own training time, from train_and_evaluate's results (a run read back reports when it
  # first ran). A custom runner's results may leave out work it did besides (shared baselines): untimed.
  train_seconds, untimed = 0.0, 0
  for arm in claim.arms:
    values, extras = [], {k: [] for k in claim.report}
    for seed in claim.seeds:
      config = claims_lib.apply_overrides(claim.get_config(), {**arm.overrides, "seed": seed})
      # Keyed by the config alone: claims that share an arm's config share its runs.
      label = re.sub(r"[^A-Za-z0-9_.=+-]", "_", arm.label)
      wd = pathlib.Path(runs_dir) / f"{label}-{_config_hash(config)}" / f"seed{seed}"
      print(f"[{claim.name}] arm {arm.label}, seed {seed} -> {wd}", flush=True)
      results = (claim.runner or train_and_evaluate)(config, str(wd))
      values.append(claims_lib.metric_value(claim.metric, results))
      if claim.runner is None and isinstance(results.get("wall_time_s"), (int, float)):
        train_seconds += results["wall_time_s"]
      else:
        untimed += 1
      for k, m in claim.report.items():
        extras[k].append(claims_lib.metric_value(m, results))
    per_arm[arm.label] = {"values": values, "extras": extras}
  means = {k: statistics.fmean(v["values"]) for k, v in per_arm.items()}
  verdicts = [(e, e.holds(means)) for e in claim.expects]
  return {"per_arm": per_arm, "means": means, "verdicts": verdicts, "seconds": time.monotonic() - t0,
          "train_seconds": train_seconds, "untimed_runs": untimed}


def _duration(outcome: dict) -> str:
  """This invocation's time and, when runs were read back from earlier invocations, their own."""
  text = f"{outcome['seconds'] / 60:.1f} min"
  train, untimed = outcome.get("train_seconds", 0.0), outcome.get("untimed_runs", 0)
  if untimed and outcome["seconds"] < 60:  # most likely read back, with no time of their own to show
    text += " (runs read from earlier invocations)"
  elif train > outcome["seconds"]:  # some runs were read back: say how long they took when they ran
    text += f" (runs read from earlier invocations; their training took {train / 60:.1f} min)"
  return text


def _std(xs):
  finite = [x for x in xs if x != float("inf")]
  return statistics.stdev(finite) if len(finite) > 1 else 0.0


def _fmt(xs):
  """Mean ± std over seeds; "—" for a value that an arm does not have (NaN in every seed); the seeds'
  values one by one when some are infinite ("never") or NaN (the statistics module fails on NaN)."""
  if all(x != x for x in xs):
    return "—"
  if any(x == float("inf") or x != x for x in xs):
    return " / ".join("never" if x == float("inf") else f"{x:.4g}" for x in xs)
  sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
  return f"{statistics.fmean(xs):.4g} ± {sd:.2g}"


def render(claim: claims_lib.Claim, outcome: dict) -> str:
  held = all(ok for _, ok in outcome["verdicts"])
  lines = [
      f"<!-- claim:{claim.name} -->",
      f"## {claim.name}: {'HOLDS' if held else 'DOES NOT HOLD'}",
      "",
      f"- Paper: {claim.paper}",
      f"- Claim: {claim.statement}",
      f"- Setting here: {claim.setting}",
      f"- Seeds: {list(claim.seeds)}; metric: {claim.metric_name} (mean ± sample std over seeds)",
      f"- Ran: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}, "
      f"{_duration(outcome)}",
      "",
  ]
  # A report column that repeats the claim's own metric (configs share one report between claims) is left out.
  columns = [k for k, m in claim.report.items() if m != claim.metric]
  head = ["arm", claim.metric_name, *columns, "per seed"]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for arm in claim.arms:
    r = outcome["per_arm"][arm.label]
    per_seed = ", ".join("never" if v == float("inf") else f"{v:.4g}" for v in r["values"])
    cells = [arm.label, _fmt(r["values"]), *(_fmt(r["extras"][k]) for k in columns), per_seed]
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  for e, ok in outcome["verdicts"]:
    if e.b is None:  # against a declared value
      lines.append(f"- {'holds' if ok else 'does NOT hold'}: {e.describe(claim.metric_name)} "
                   f"({outcome['means'][e.a]:.4g})")
      continue
    a, b = outcome["per_arm"][e.a]["values"], outcome["per_arm"][e.b]["values"]
    spread = max(_std(a), _std(b))
    note = ""
    if e.kind != "within" and abs(statistics.fmean(a) - statistics.fmean(b)) < spread:
      note = "; the difference is smaller than the seed-to-seed spread"
    lines.append(f"- {'holds' if ok else 'does NOT hold'}: {e.describe(claim.metric_name)} "
                 f"({outcome['means'][e.a]:.4g} vs {outcome['means'][e.b]:.4g}{note})")
  lines.append(f"<!-- /claim:{claim.name} -->")
  return "\n".join(lines) + "\n"


def update_report(path: str | os.PathLike, name: str, section: str) -> None:
  """Replaces the section of claim ``name`` in the report (appends it if new)."""
  path = pathlib.Path(path)
  with open(path.with_suffix(".lock"), "w") as lock:  # concurrent `make repro CLAIM=...` runs
    fcntl.flock(lock, fcntl.LOCK_EX)
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(rf"<!-- claim:{re.escape(name)} -->.*?<!-- /claim:{re.escape(name)} -->\n", re.S)
    if pattern.search(text):
      text = pattern.sub(lambda _: section, text)
    else:
      text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  found = discover()
  if FLAGS.claim:
    if FLAGS.claim not in found:
      raise app.UsageError(f"--claim: unknown {FLAGS.claim!r}; declared claims are {sorted(found)}")
    found = {FLAGS.claim: found[FLAGS.claim]}
  for name, claim in found.items():
    try:
      outcome = run_claim(claim, FLAGS.runs_dir)
    except Exception as e:  # pylint: disable=broad-except  (report, then leave: no thread may hold the exit)
      if not isinstance(e, ConfigError):
        traceback.print_exc()
      print(f"FATAL: claim {name}: {e}; REPRODUCTION.md keeps its earlier section (rerun to resume the runs)",
            file=sys.stderr, flush=True)
      os._exit(2 if isinstance(e, ConfigError) else 1)  # pylint: disable=protected-access
    section = render(claim, outcome)
    update_report(FLAGS.output, name, section)
    print(section, flush=True)
  print(json.dumps({"claims": sorted(found), "report": FLAGS.output}))


if __name__ == "__main__":
  app.run(main)
