"""RepoFusion (Shrivastava et al., 2023) on the standard library: training with repository context vs without.

    .venv/bin/python -m experiments.repro --claim=repofusion_context_helps --output=/tmp/repofusion.md
    make repro CLAIM=repofusion_context_helps

Not a training run of the harness: each arm is one `experiments.techniques.text.repo_context.repo_context_runner`
call, and the two arms of a seed share one run (the same training points, step for step, and the same
evaluation points). A byte-level causal Transformer (width 64, 2 blocks, 4 heads, MLP ratio 4) is trained from
scratch for 250 steps of 16 single-line completion examples of 256 positions (Adam 3e-3, 30 warmup steps, cosine
to 10%), with the loss on the target line's bytes only. Repositories: the standard library's packages with at
least 3 files; 9 of 28 held out by a hash of the package name (see the runner's docstring). Arms:

- ``repository context``: proposals from the point's package (imported files parsed from the prefix, the most
  lexically similar sibling, a file with a similar name; one of each kind, the ``def`` / ``class`` lines of each
  file cut to 40 bytes after a header naming kind and file), 64 bytes of the prefix protected, the rest of the
  prefix after them (proposals are cut first, the last kind first);
- ``in-file only``: no proposal, the prefix fills the same 256 positions.

Sizing: resized once for time, before any result was looked at (a 10-step timing run only): first drafted at width
96, 3 blocks, 400 steps, 384 positions (2.1 s a step on the loaded shared cores), then set as above.

Tried once (`experiments.repro`, 3 seeds, 2026-12-01, 2 shared and heavily loaded cores, 26.7 min): held-out
target-line nats per byte 2.437 +- 0.007 with repository context against 2.475 +- 0.042 in-file only (per seed
2.429 / 2.442 / 2.439 against 2.429 / 2.484 / 2.512; paired differences -0.000, -0.042, -0.073): the declared
direction holds on the seed means, but the difference is smaller than the in-file arm's seed spread and seed 0
is a tie. Greedy exact match is about 1% (3 of 288 points) with context and 0 without. Caveat: at this budget
both models are barely past byte statistics (about 2.4 nats per byte on the target), far from the regime where
the paper's models copy identifiers from context; the evidence is weak either way.

Both arms see the same number of positions per example: the comparison asks whether repository context is worth
more than the older in-file text it displaces. Declared before any run: the repository-context arm's held-out
target-line nats per byte is lower than the in-file arm's (seed means, margin 0).
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.text.repo_context import repo_context_runner

PAPER = ("Shrivastava, Kocetkov, de Vries, Bahdanau, Scholak, RepoFusion: Training Code Models to Understand Your "
         "Repository, 2023, https://arxiv.org/abs/2306.10998")
RUNNER = repo_context_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict({"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4})
  c.train = ml_collections.ConfigDict({"steps": 250, "batch": 16, "learning_rate": 3e-3, "warmup": 30,
                                       "eval_every": 100})
  c.repo = ml_collections.ConfigDict({
      "arm": "context", "kinds": ("imports", "siblings", "similar_names"), "budget": 40, "max_per_kind": 1,
      "content": "signatures", "seq_len": 256, "prefix_reserve": 64, "max_target": 80, "min_files": 3,
      "heldout_fraction": 0.3, "eval_per_package": 32, "share_runs": True,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.model.update(dim=16, depth=1, num_heads=2, mlp_ratio=2)
  c.train.update(steps=3, batch=2, eval_every=3, warmup=1)
  c.repo.update(seq_len=128, prefix_reserve=32, eval_per_package=2, share_runs=False)
  return c


CONTEXT = Arm("repository context", {"repo.arm": "context"})
NO_CONTEXT = Arm("in-file only", {"repo.arm": "no_context"})
SETTING = ("Python standard library packages with >= 3 files as repositories, 9 of 28 held out by a hash of the "
           "name (asyncio, distutils, encodings, html, idlelib, multiprocessing, re, unittest, urllib on CPython "
           "3.11); whole-line completion points (non-blank, non-comment lines of <= 80 bytes), drawn package, file, "
           "line uniformly; byte-level causal Transformer (width 64, 2 blocks, 4 heads) trained from scratch, 250 "
           "steps x 16 examples of 256 positions, loss on the target line only. Context arm: imported / sibling / "
           "similar-name files of the same package (their def/class lines, 40 bytes each, one per kind), "
           "concatenated before the prefix (64 prefix bytes protected); in-file arm: the prefix fills the same "
           "256 positions. Metric: held-out target-line nats per byte on up to 32 points per held-out package.")
_REPORT = {"exact match": "exact_match", "context bytes (eval)": "eval_context_tokens",
           "prefix bytes (eval)": "eval_prefix_tokens", "step s": "step_seconds", "wall s": "wall_seconds"}


def get_claim():
  return Claim(
      name="repofusion_context_helps",
      paper=PAPER,
      statement="Models trained with repository context (imports, sibling files, files with similar names, ...) "
      "complete single lines of code better on repositories not seen in training than models trained without it.",
      setting=SETTING + " Declared: the repository-context arm's held-out target nats per byte below the in-file "
      "arm's.",
      get_config=get_config, arms=[CONTEXT, NO_CONTEXT], metric="target_nats_per_byte",
      metric_name="held-out target-line nats per byte",
      expects=[Expect("less", "repository context", "in-file only")], runner=repo_context_runner, report=_REPORT)
