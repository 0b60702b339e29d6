"""MEMO-style plans on a small decoder: the longest sequence that trains under a per-device budget.

`plans_runner(config, workdir)` is a claim's ``runner`` (configs/memo_plans.py). Each arm runs in a
subprocess with ``XLA_FLAGS="--xla_force_host_platform_device_count=<devices>
--xla_disable_hlo_passes=cse_barrier_expander"`` (the parent may already hold a 1-device JAX; the
second flag makes ``jax.checkpoint`` take effect on XLA:CPU, see `jaxdyn.memory._plans`), builds a
`jaxdyn.models.Transformer` with `jaxdyn.memory.flash_causal_attention` (MEMO's linear-memory
attention) and, for each length of ``config.memo.lengths`` in turn (ascending, stopping at the first
that does not fit):

- ``plain``: the plain `lm_train_step` on one device (no sequence sharding, no checkpointing);
- ``sharded``: the plain step with the sequence split over all devices (attribution: sharding alone);
- ``planned``: the sequence split over all devices and the `plan_memory` plan for
  ``budget - arguments`` bytes (the step's parameters and tokens), from one `profile_step` at
  ``config.memo.profile_len``; host offload is off (``host_budget=0``: on CPU an offload saves nothing).

A length *fits* when the compiled step's ``memory_analysis`` temp + argument bytes per device are at
most the budget. At the longest fitting length the arm then really trains ``train_steps`` SGD steps
(finite losses required). For the loss comparison every arm also trains ``train_steps`` steps at
``compare_len`` from the same initialisation (``nnx.Rngs(seed)``) on the same random byte sequences
(``numpy`` seeded by the seed); the planned arm there uses the plan for the same memory pressure per
token as at its longest length (``budget * compare_len / longest``), so its layers are checkpointed.

It writes ``results.json`` in ``workdir`` (through `experiments.claims.caches_results`).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from experiments.claims import caches_results
from jaxdyn.memory._plans import CPU_REMAT_XLA_FLAG

ARMS = ("plain", "sharded", "planned")
REPO = pathlib.Path(__file__).resolve().parents[3]

_SCRIPT = r'''
import json, math, sys, time
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxdyn import memory
from jaxdyn.memory import _plans
from jaxdyn.models import Transformer

c = json.loads(sys.argv[1])
arm, seed, budget = c["arm"], c["seed"], c["budget_mib"] * 2**20
n = jax.device_count() if arm != "plain" else 1

def build():
  return Transformer(dim=c["dim"], depth=c["depth"], num_heads=c["num_heads"], mlp_ratio=c["mlp_ratio"],
                     attention_fns=memory.flash_causal_attention(c["block"]), rngs=nnx.Rngs(seed))

model = build()
params_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model)))
profile = memory.profile_step(model, seq_len=c["profile_len"], seq_shards=n) if arm == "planned" else None

def plan_for(t, device_budget):
  args = params_bytes + 2 * 4 * t // n  # parameters, tokens and targets per device
  return memory.plan_memory(model, seq_len=t, device_budget=device_budget - args, profile=profile, seq_shards=n)

rows, longest, longest_plan = [], None, None
for t in c["lengths"]:
  plan = None
  if arm == "planned":
    try:
      plan = plan_for(t, budget)
    except ValueError as e:
      rows.append({"seq_len": t, "fits": False, "why": str(e)[:200]})
      break
  m = memory.step_memory(model, seq_len=t, seq_shards=n, plan=plan)
  used = m["temp"] + m["argument"]
  row = {"seq_len": t, "temp": m["temp"], "argument": m["argument"], "used": used, "fits": used <= budget}
  if plan is not None:
    row.update(predicted=plan.predicted_resident_bytes + m["argument"],
               checkpointed=sum(lp.checkpointed for lp in plan.layers))
  rows.append(row)
  if not row["fits"]:
    break
  longest, longest_plan = t, plan

def train(t, plan, steps):
  # Same init (seed) and data (numpy seeded by the seed and length) in every arm.
  graphdef, state = nnx.split(build())
  mesh = Mesh(np.array(jax.devices()[:n]), ("seq",))
  tok_sh, rep = NamedSharding(mesh, P(None, "seq")), NamedSharding(mesh, P())
  step = jax.jit(_plans.lm_train_step(graphdef, remat=None if plan is None else plan.remat,
                                      learning_rate=c["learning_rate"]), out_shardings=(rep, rep))
  state = jax.device_put(state, rep)
  rng = np.random.default_rng([seed, t])
  losses = []
  for _ in range(steps):
    seq = rng.integers(0, 256, (1, t + 1)).astype(np.int32)
    x, y = jax.device_put(seq[:, :-1], tok_sh), jax.device_put(seq[:, 1:], tok_sh)
    state, loss = step(state, x, y)
    losses.append(float(loss))
  return losses

out = {"arm": arm, "devices": n, "rows": rows, "longest": longest, "params_bytes": params_bytes}
if longest is not None:
  t0 = time.monotonic()
  out["longest_losses"] = train(longest, longest_plan, c["train_steps"])
  out["longest_train_seconds"] = round(time.monotonic() - t0, 2)
  out["longest_plan"] = None if longest_plan is None else longest_plan.table()
cl = c["compare_len"]
cmp_plan = None
if arm == "planned" and longest is not None:
  cmp_plan = plan_for(cl, budget * cl / longest)
  out["compare_plan"] = cmp_plan.table()
  out["compare_checkpointed"] = sum(lp.checkpointed for lp in cmp_plan.layers)
out["compare_losses"] = train(cl, cmp_plan, c["train_steps"])
print("RESULT " + json.dumps(out))
'''


def _run_arm(c: dict[str, Any], timeout: int) -> dict[str, Any]:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={c['devices']} {CPU_REMAT_XLA_FLAG}")
  out = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(c)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout)
  if out.returncode != 0:
    raise RuntimeError(f"memo plans arm {c['arm']!r} failed:\n{out.stderr[-3000:]}")
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@caches_results
def plans_runner(config, workdir: str) -> dict[str, Any]:
  """One (arm, seed) run of the MEMO plans study; see the module docstring."""
  c = dict(config.memo.to_dict(), seed=int(config.seed))
  if c["arm"] not in ARMS:
    raise ValueError(f"config.memo.arm: must be one of {list(ARMS)}, got {c['arm']!r}")
  c["lengths"] = sorted(int(t) for t in c["lengths"])
  t0 = time.monotonic()
  r = _run_arm(c, timeout=int(c["timeout_seconds"]))
  if r["longest"] is None:
    raise RuntimeError(f"memo plans arm {c['arm']!r}: no length of {c['lengths']} fits {c['budget_mib']} MiB")
  losses = r["longest_losses"] + r["compare_losses"]
  if not all(math.isfinite(x) for x in losses):
    raise RuntimeError(f"memo plans arm {c['arm']!r}: non-finite loss {losses}")
  return {
      "arm": c["arm"],
      "devices": r["devices"],
      "max_len": r["longest"],
      "log2_max_len": math.log2(r["longest"]),
      "compare_len": c["compare_len"],
      "compare_loss": r["compare_losses"][-1],
      "compare_losses": r["compare_losses"],
      "longest_losses": r["longest_losses"],
      "longest_train_seconds": r["longest_train_seconds"],
      "compare_checkpointed_layers": r.get("compare_checkpointed", 0),
      "rows": r["rows"],
      "longest_plan": r.get("longest_plan"),
      "compare_plan": r.get("compare_plan"),
      "wall_seconds": round(time.monotonic() - t0, 2),
  }
