"""Repository context (RepoFusion) on the standard library's packages, run as a claim's ``runner``.

`repo_context_runner(config, workdir)` trains the shared byte-level `jaxdyn.models.Transformer`
(`lm.make_model`) on single-line completion (Shrivastava et al., "RepoFusion", 2023,
https://arxiv.org/abs/2306.10998) with ``r = config.repo``, ``t = config.train``, ``m = config.model``,
two ways, for the same steps, the same batch size, the same sequence length ``r.seq_len`` and the same
completion points:

- ``"context"``: each example is `jaxdyn.text.encode_completion` of the point's repository proposals
  (`jaxdyn.text.repo_proposals` with ``r.kinds``, ``r.budget`` tokens each, ``r.max_per_kind`` per kind,
  ``r.content``), ``r.prefix_reserve`` tokens of the prefix protected from them, then the prefix;
- ``"no_context"``: the same points with no proposal, so the prefix (the file's own text before the
  point) fills the whole sequence: the same tokens per example spent on more in-file context.

The loss is on the target line's bytes only (its newline included).

**Repositories and the split by package.** A repository is one package of the standard library
(`jaxdyn.data.load_stdlib_corpus("all")`: the corpus's by-file split is not used, the split here is by
package) with at least ``r.min_files`` files; single-file packages are left out (no cross-file context).
A package is held out when the first 8 bytes of ``SHA-256("repofusion/" + name)``, as a fraction of
``2^64``, are below ``r.heldout_fraction``: a function of the name alone, fixed before any run (on
CPython 3.11: 28 packages, 9 held out: asyncio, distutils, encodings, html, idlelib, multiprocessing, re,
unittest, urllib). Training points: a package uniformly among the training packages, a file uniformly
among its files with a target line, a line uniformly among its `jaxdyn.text.completion_lines` of at most
``r.max_target`` bytes, drawn afresh each step from a seeded generator shared by the arms. Evaluation
points: up to ``r.eval_per_package`` per held-out package drawn the same way from a fixed generator
(independent of the seed: every arm and seed is scored on the same points).

**Metrics** on the evaluation points: ``target_nats_per_byte``, the target lines' pooled mean nats per
byte (`lm.evaluate` with the target-only weights); ``exact_match``, the share of points whose target
line the greedy single-line completion reproduces exactly, computed from one teacher-forced pass (greedy
decoding reproduces the line iff every target byte is the argmax given the true bytes before it).

The two arms of a seed share one run: ``<runs dir>/repofusion-shared-<hash>/seed<k>/results.json``.
"""

from __future__ import annotations

import hashlib
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.claims import caches_results, one_arm
from experiments.techniques.text import lm
from jaxdyn import text
from jaxdyn.data import load_stdlib_corpus

ARMS = ("context", "no_context")
EVAL_SEED = 1234


def _held_out(name: str, fraction: float) -> bool:
  h = int.from_bytes(hashlib.sha256(("repofusion/" + name).encode()).digest()[:8], "big")
  return h / 2.0**64 < fraction


def repositories(r) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
  """``{package: {"documents", "names", "lines"}}`` for packages with >= ``r.min_files`` files, and the
  sorted training and held-out package names."""
  corpus = load_stdlib_corpus("all")
  by_pkg: dict[str, list[int]] = {}
  for i, p in enumerate(corpus.packages):
    by_pkg.setdefault(p, []).append(i)
  repos = {}
  for p, idx in sorted(by_pkg.items()):
    if len(idx) < r.min_files:
      continue
    docs = [corpus.documents[i] for i in idx]
    lines = [text.completion_lines(d, max_bytes=r.max_target) for d in docs]
    repos[p] = {"documents": docs, "names": [corpus.names[i] for i in idx], "lines": lines}
  held = [p for p in repos if _held_out(p, r.heldout_fraction)]
  train = [p for p in repos if p not in held]
  return repos, train, held


def draw_point(repos, packages, rng) -> tuple[str, int, int]:
  """A completion point ``(package, file, line)``: package, then file, then line, each uniformly."""
  p = packages[int(rng.integers(len(packages)))]
  files = [i for i, ls in enumerate(repos[p]["lines"]) if len(ls)]
  f = files[int(rng.integers(len(files)))]
  ls = repos[p]["lines"][f]
  return p, f, int(ls[int(rng.integers(len(ls)))])


def encode(repos, point, r, arm: str) -> text.RepoExample:
  """One point's training example for ``arm``."""
  p, f, line = point
  repo = repos[p]
  prefix, target = text.split_at_point(repo["documents"][f], line)
  if arm == "context":
    props = text.repo_proposals(repo["documents"], repo["names"], f, line, kinds=tuple(r.kinds), budget=r.budget,
                                max_per_kind=r.max_per_kind, content=r.content)
  else:
    props = ()
  return text.encode_completion(props, prefix, target, seq_len=r.seq_len, prefix_reserve=r.prefix_reserve)


def _batch(examples) -> dict[str, np.ndarray]:
  return {"inputs": np.stack([e.inputs for e in examples]), "targets": np.stack([e.targets for e in examples]),
          "weights": np.stack([e.weights for e in examples]),
          "_context_tokens": float(sum(e.num_context for e in examples)),
          "_prefix_tokens": float(sum(e.num_prefix for e in examples))}


def train_batches(repos, packages, r, t, arm: str, seed: int):
  """Batches of ``t.batch`` fresh points per step (the same points for both arms of a seed)."""
  rng = np.random.default_rng([seed, 21])
  while True:
    yield _batch([encode(repos, draw_point(repos, packages, rng), r, arm) for _ in range(t.batch)])


def eval_points(repos, held, r) -> list[tuple[str, int, int]]:
  """Up to ``r.eval_per_package`` distinct points per held-out package, seed-independent."""
  rng = np.random.default_rng(EVAL_SEED)
  points = []
  for p in held:
    total = sum(len(ls) for ls in repos[p]["lines"])
    seen: set = set()
    for _ in range(20 * r.eval_per_package):
      if len(seen) == min(r.eval_per_package, total):
        break
      pt = draw_point(repos, [p], rng)
      if pt not in seen:
        seen.add(pt)
        points.append(pt)
  return points


def score(model, batches) -> dict[str, float]:
  """Pooled target nats per byte and the exact-match share of greedy single-line completion."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def f(state, inputs, targets, weights):
    logits = nnx.merge(graphdef, state)(inputs).astype(jnp.float32)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
    wrong = (jnp.argmax(logits, -1) != targets) & (weights > 0)
    return jnp.sum(nll * weights), jnp.sum(weights), jnp.sum(~jnp.any(wrong, axis=-1))

  num = den = hits = n = 0.0
  for b in batches:
    a, w, h = f(state, jnp.asarray(b["inputs"]), jnp.asarray(b["targets"]), jnp.asarray(b["weights"]))
    num, den, hits, n = num + float(a), den + float(w), hits + float(h), n + len(b["inputs"])
  return {"target_nats_per_byte": num / den, "exact_match": hits / n}


def train_arm(config, arm: str, repos, train_pkgs, val) -> dict[str, Any]:
  r, t = config.repo, config.train
  model = lm.make_model(config.model, config.seed)
  t0 = time.monotonic()
  history = lm.train(model, train_batches(repos, train_pkgs, r, t, arm, config.seed), steps=t.steps,
                     learning_rate=t.learning_rate, warmup=t.warmup, log_every=t.eval_every,
                     eval_fn=lambda mod: score(mod, val), eval_every=t.eval_every)
  last = history[-1]
  return {"history": history, "target_nats_per_byte": last["target_nats_per_byte"],
          "exact_match": last["exact_match"], "step_seconds": last["step_seconds"],
          "context_tokens_per_example": last["cum_context_tokens"] / (t.steps * t.batch),
          "prefix_tokens_per_example": last["cum_prefix_tokens"] / (t.steps * t.batch),
          "wall_seconds": round(time.monotonic() - t0, 2)}


def run_all(config) -> dict[str, Any]:
  """Both arms of one seed on the same training and evaluation points."""
  r = config.repo
  repos, train_pkgs, held = repositories(r)
  points = eval_points(repos, held, r)
  arms = {}
  for arm in ARMS:
    examples = [encode(repos, pt, r, arm) for pt in points]
    val = [_batch(examples[i:i + 32]) for i in range(0, len(examples), 32)]
    arms[arm] = train_arm(config, arm, repos, train_pkgs, val)
    arms[arm]["eval_context_tokens"] = float(np.mean([e.num_context for e in examples]))
    arms[arm]["eval_prefix_tokens"] = float(np.mean([e.num_prefix for e in examples]))
  for arm in arms.values():
    arm["nats_minus_no_context"] = arm["target_nats_per_byte"] - arms["no_context"]["target_nats_per_byte"]
  return {"per_arm": arms, "train_packages": train_pkgs, "heldout_packages": held, "eval_points": len(points),
          "eval_target_bytes": int(sum(len(text.split_at_point(repos[p]["documents"][f], ln)[1])
                                       for p, f, ln in points)),
          "python_version": platform.python_version()}


def run(config, workdir: str) -> dict[str, Any]:
  """One arm (``config.repo.arm``) for one seed, from the seed's shared run of both arms."""
  return one_arm(run_all, config, workdir, arm_key="repo.arm", arms=ARMS, prefix="repofusion")


repo_context_runner = caches_results(run)
