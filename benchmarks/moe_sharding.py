"""MoE sharding on 8 forced CPU devices: plain FSDP, Hecate's FSSDP and expert parallelism, bytes and time.

One routed MoE layer (``jaxdyn.schemes``: E = 32 experts of d = 64 -> h = 256 -> d, top-1 router),
1,024 tokens split over 8 devices, at two expert loads:

- balanced: every token's expert uniform at random (each device's 128 tokens use nearly all experts);
- skewed: Zipf-like routing, each device with its own popularity order of the experts and
  ``p(rank r) ~ r^-s`` (``--zipf``, default 2), so each device's tokens use few experts.

The routing is set by construction (router ``3 I``; token ``2 e_k`` + noise goes to expert ``k``). For
each load and scheme: the bytes one device sends per forward + backward step, counted by
`jaxdyn.schemes.collective_bytes` from the collectives in the traced step (gradients of the parameters
and of the tokens, as for a layer inside a network), the overflowing tokens, and the step time (median
over interleaved rounds of `benchmarks._timing.timed`). Capacities are static: FSSDP's ``C`` is the
smallest that drops no token (the most distinct experts one device uses); expert parallelism runs with
the smallest per-expert capacity that drops none and with the usual capacity factor 1.25 (``1.25 n / E``
slots), whose drops are reported. Forced CPU devices share this machine's cores and copy memory for a
collective, so the times compare compute and copies, not a network.

Run: .venv/bin/python benchmarks/moe_sharding.py   (the last line is machine-readable)
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402  (jax must see XLA_FLAGS first)
import math  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402

from jaxdyn import schemes  # noqa: E402


def routing(load: str, n_dev: int, n: int, e: int, zipf: float, rng: np.random.Generator) -> np.ndarray:
  """Expert ids ``(n_dev, n)``: uniform, or Zipf over a per-device random order of the experts."""
  if load == "balanced":
    return rng.integers(0, e, size=(n_dev, n))
  p = 1.0 / np.arange(1, e + 1) ** zipf
  p /= p.sum()
  return np.stack([rng.permutation(e)[rng.choice(e, size=n, p=p)] for _ in range(n_dev)])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experts", type=int, default=32)
  parser.add_argument("--dim", type=int, default=64)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--tokens_per_device", type=int, default=128)
  parser.add_argument("--zipf", type=float, default=2.0)
  parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
  parser.add_argument("--reps", type=int, default=3, help="timed calls per round (median)")
  args = parser.parse_args()

  devices = jax.devices()
  n_dev, n, e, d, h = len(devices), args.tokens_per_device, args.experts, args.dim, args.hidden
  assert n_dev == 8, f"expected 8 forced CPU devices, got {n_dev}"
  assert d >= e, "the designed router needs dim >= experts"
  mesh = Mesh(np.array(devices), ("data",))
  params = schemes.init_moe_params(jax.random.key(0), d, h, e)
  params["router"] = 3.0 * jnp.eye(d, e) + 0.1 * params["router"]
  target = jax.random.normal(jax.random.key(2), (n_dev * n, d))
  placed = {}
  for scheme in ("fsdp", "ep"):
    specs = schemes.moe_param_specs(scheme)
    placed[scheme] = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in params.items()}
  placed["fssdp"] = placed["fsdp"]  # the same sharded storage
  fns = {"fsdp": schemes.moe_fsdp, "fssdp": schemes.moe_fssdp, "ep": schemes.moe_expert_parallel}

  def step_fn(scheme, **kw):
    def loss(p, x):
      y, overflow = fns[scheme](p, x, mesh=mesh, **kw)
      return jnp.mean((y - target) ** 2), overflow
    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)

  rng = np.random.default_rng(0)
  rows, steps = [], {}
  for load in ("balanced", "skewed"):
    ids = routing(load, n_dev, n, e, args.zipf, rng)
    x = jax.device_put(2.0 * jax.nn.one_hot(ids.reshape(-1), d)
                       + 0.3 * jax.random.normal(jax.random.key(1), (n_dev * n, d)),
                       NamedSharding(mesh, PartitionSpec("data")))  # tokens split over the axis
    routed = np.asarray(jnp.argmax(x @ params["router"], axis=-1)).reshape(n_dev, n)
    assert (routed == ids).all(), "the designed routing did not hold"
    distinct = max(len(set(row.tolist())) for row in ids)
    per_expert = max(int(np.bincount(row, minlength=e).max()) for row in ids)
    configs = [("fsdp", {}), ("fssdp", {"capacity": distinct}), ("ep", {"capacity": per_expert}),
               ("ep", {"capacity": math.ceil(1.25 * n / e)})]
    for scheme, kw in configs:
      label = scheme + (f" C={kw['capacity']}" if scheme == "fssdp" else
                        f" cap={kw['capacity']}" if scheme == "ep" else "")
      key = (scheme, tuple(sorted(kw.items())))
      if key not in steps:
        steps[key] = jax.jit(step_fn(scheme, **kw))
      step = steps[key]
      nbytes = schemes.collective_bytes(step_fn(scheme, **kw), placed[scheme], x)
      (_, overflow), _ = step(placed[scheme], x)
      rows.append(dict(load=load, label=label, step=step, args=(placed[scheme], x), bytes=nbytes,
                       overflow=int(np.sum(overflow)), times=[]))
    print(f"{load}: most distinct experts on one device {distinct} of {e}; largest load of one expert "
          f"on one device {per_expert} of {n} tokens")

  for rnd in range(args.rounds):
    for row in rows if rnd % 2 == 0 else rows[::-1]:
      row["times"].append(timed(row["step"], *row["args"], reps=args.reps))

  p_expert = 2 * d * h + h + d
  print(f"devices: {n_dev} forced CPU ({jax.devices()[0].device_kind}); E={e}, d={d}, h={h} "
        f"({p_expert} params per expert), {n} tokens per device; zipf s={args.zipf}; "
        f"bytes per device per forward+backward step")
  print(f"{'load':<9} {'scheme':<14} {'total KiB':>10} {'all_gather':>11} {'all_to_all':>11} "
        f"{'red_scatter':>11} {'psum':>8} {'overflow':>8} {'median ms':>10}")
  for r in rows:
    b = r["bytes"]
    print(f"{r['load']:<9} {r['label']:<14} {b['total'] / 1024:>10.1f} {b.get('all_gather', 0):>11} "
          f"{b.get('all_to_all', 0):>11} {b.get('reduce_scatter', 0):>11} {b.get('psum', 0):>8} "
          f"{r['overflow']:>8} {1e3 * statistics.median(r['times']):>10.2f}")

  def total(load, scheme):
    return next(r["bytes"]["total"] for r in rows if r["load"] == load and r["label"].split()[0] == scheme)

  def ms(load, scheme):
    return statistics.median(next(r["times"] for r in rows if r["load"] == load and r["label"].split()[0] == scheme))

  print(f"fssdp_over_fsdp_time_balanced={ms('balanced', 'fssdp') / ms('balanced', 'fsdp'):.3f} "
        f"fssdp_over_fsdp_time_skewed={ms('skewed', 'fssdp') / ms('skewed', 'fsdp'):.3f}")
  print(f"fssdp_over_fsdp_bytes_balanced={total('balanced', 'fssdp') / total('balanced', 'fsdp'):.3f}")
  print(f"fssdp_over_fsdp_bytes_skewed={total('skewed', 'fssdp') / total('skewed', 'fsdp'):.3f}")


if __name__ == "__main__":
  main()
