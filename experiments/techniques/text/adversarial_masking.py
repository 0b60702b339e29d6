"""Adversarial-MidiBERT at toy scale, run as a claim's ``runner``: adversarial vs random MLM masking, then a
classifier fine-tuned with or without mask fine-tuning, tested where a spurious token's correlation is broken.

`adversarial_masking_runner(config, workdir)` (``t = config.task``, ``m = config.model``, ``p = config.pretrain``,
``f = config.finetune``):

**The task** (`make_task`, a generator written here). A row is a motif of ``t.motif`` content tokens (ids in
``[0, t.content)``, uniform) repeated to length ``t.length``; each position is then replaced by a uniform content
token with probability ``t.noise`` (context-free noise), and one uniformly chosen position holds a *marker*
(id ``t.content`` or ``t.content + 1``). The label is the majority rule ``y = [#{i : motif_i < content / 2} >
motif / 2]``. The marker is the bias-carrying token: in the pre-training corpus it is independent of
everything (its position and identity cannot be inferred from context); in the fine-tuning training set it
equals ``content + y`` with probability ``t.bias`` (a spurious shortcut); in the bias-broken test set it is
independent of ``y`` again; an in-distribution test set keeps the training correlation.

**Pre-training** (one encoder per masking rule, shared by the fine-tuning arms of a seed): a bidirectional
`jaxdyn.models.Transformer` (`jaxdyn.text.bidirectional_attention`) as a masked LM on ``p.examples`` rows,
``p.steps`` Adam steps. ``p.masking``:

- ``"random"``: `random_selection` (15% of positions) and the 80/10/10 rule (`corrupt`); loss `mlm_loss`;
- ``"adversarial"``: a masker head (``dim -> dim -> 1``, sigmoid) on the shared encoder's features of the clean
  row scores the tokens, `adversarial_selection` takes the top of them (ratio U(0.1, 0.3) of the available
  positions, at most 15%: the same count as random masking here), `corrupt` as above; loss `mlm_loss` +
  `masker_loss` in one backward pass (the code's single optimiser step); every ``p.book_every`` steps the
  per-example mask book is updated from the masker's scores of every pre-training row (`update_mask_book`).

Reported for the pre-training: ``marker_mask_rate``, the share of selections that fell on the marker position
(random masking: about 15%), and ``noise_mask_rate`` the same for noise positions.

**Fine-tuning**: mean-pooled encoder features -> a linear 2-way classifier, every weight trained, ``f.steps``
Adam steps on ``f.examples`` labelled rows; with ``f.mask_rate > 0`` each batch gets mask fine-tuning
(`mask_fine_tuning`, the default form). Evaluation on clean rows (the authors' code also masks evaluation
inputs when ``--mask`` is set; not done here). Metrics: ``bias_broken_accuracy`` (the claim's),
``in_distribution_accuracy``, ``marker_reliance`` (accuracy on test rows whose marker contradicts the label
minus on those where it agrees: 0 when the marker is ignored).

The arms differ only in ``p.masking`` and ``f.mask_rate``: all four are computed once per seed into
``<runs dir>/adversarial-masking-shared-<hash>/seed<k>/results.json`` (hash of the config without the seed and
the arm keys; with ``p.share_runs`` False, under the arm's own workdir), so the two fine-tuning arms of a
masking rule share one pre-trained encoder.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, shared_run
from jaxdyn import text
from jaxdyn.models import Transformer

MASKINGS = ("random", "adversarial")


# --- the task -------------------------------------------------------------------------------------
def make_task(t, n: int, *, rng: np.random.Generator, bias: float | None) -> dict[str, np.ndarray]:
  """``n`` rows of the motif task (module docstring); ``bias`` None: marker independent of the label."""
  motif = rng.integers(0, t.content, (n, t.motif))
  y = ((motif < t.content // 2).sum(-1) * 2 > t.motif).astype(np.int32)
  reps = -(-t.length // t.motif)
  x = np.tile(motif, (1, reps))[:, :t.length]
  noise = rng.random((n, t.length)) < t.noise
  x = np.where(noise, rng.integers(0, t.content, (n, t.length)), x)
  pos = rng.integers(0, t.length, n)
  if bias is None:
    z = rng.integers(0, 2, n)
  else:
    z = np.where(rng.random(n) < bias, y, 1 - y)
  x[np.arange(n), pos] = t.content + z
  marker = np.zeros((n, t.length), bool)
  marker[np.arange(n), pos] = True
  noise &= ~marker
  return {"x": x.astype(np.int32), "y": y, "marker": marker, "noise": noise, "z": z.astype(np.int32)}


# --- the model ------------------------------------------------------------------------------------
class Net(nnx.Module):
  """A bidirectional Transformer encoder with an MLM head (its own), a masker head and a classifier head."""

  def __init__(self, vocab: int, m, *, rngs: nnx.Rngs):
    self.encoder = Transformer(vocab_size=vocab, dim=m.dim, depth=m.depth, num_heads=m.num_heads,
                               mlp_ratio=m.mlp_ratio, attention_fns=text.bidirectional_attention, rngs=rngs)
    self.masker_hidden = nnx.Linear(m.dim, m.dim, rngs=rngs)
    self.masker_out = nnx.Linear(m.dim, 1, rngs=rngs)
    self.classifier = nnx.Linear(m.dim, 2, rngs=rngs)

  def mlm(self, x):
    return self.encoder(x, return_features=True)

  def scores(self, feats):
    return jax.nn.sigmoid(self.masker_out(jax.nn.relu(self.masker_hidden(feats)))[..., 0])

  def classify(self, x):
    _, h = self.encoder(x, return_features=True)
    return self.classifier(h.mean(axis=1))


@functools.lru_cache(maxsize=None)
def _optimizer(lr: float, steps: int) -> optax.GradientTransformation:
  """Adam with warmup + cosine to 10% after clipping; cached, so the jitted steps below see one static object."""
  sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 10), max(steps, 2), lr * 0.1)
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))


def _pretrain_loss(params, rest, x, book, key, *, graphdef, adversarial, content):
  model = nnx.merge(graphdef, params, rest)
  k_sel, k_cor = jax.random.split(key)
  if adversarial:
    _, feats = model.mlm(x)
    scores = model.scores(feats)
    sel = text.adversarial_selection(scores, key=k_sel, book=book)
  else:
    sel = text.random_selection(x, key=k_sel, rate=0.15)
  mt = text.corrupt(x, sel, key=k_cor, mask_id=content + 2, random_vocab=content + 2)
  logits, _ = model.mlm(mt.inputs)
  loss, nll = text.mlm_loss(logits, x, mt.loss_mask)
  total = loss + text.masker_loss(scores, nll, mt.replaced, sel) if adversarial else loss
  return total, (loss, sel)


@functools.partial(jax.jit, static_argnames=("graphdef", "adversarial", "content", "tx"))
def _pretrain_step(params, opt_state, rest, x, book, key, *, graphdef, adversarial, content, tx):
  (_, (loss, sel)), grads = jax.value_and_grad(_pretrain_loss, has_aux=True)(
      params, rest, x, book, key, graphdef=graphdef, adversarial=adversarial, content=content)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss, sel


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _scores(params, rest, x, *, graphdef):
  model = nnx.merge(graphdef, params, rest)
  return model.scores(model.mlm(x)[1])


def _finetune_loss(params, rest, x, y, key, *, graphdef, mask_rate, content):
  model = nnx.merge(graphdef, params, rest)
  if mask_rate > 0:
    x, _ = text.mask_fine_tuning(x, key=key, rate=mask_rate, mask_id=content + 2)
  return optax.softmax_cross_entropy_with_integer_labels(model.classify(x), y).mean()


@functools.partial(jax.jit, static_argnames=("graphdef", "mask_rate", "content", "tx"))
def _finetune_step(params, opt_state, rest, x, y, key, *, graphdef, mask_rate, content, tx):
  loss, grads = jax.value_and_grad(_finetune_loss)(params, rest, x, y, key, graphdef=graphdef, mask_rate=mask_rate,
                                                   content=content)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


_update_book = jax.jit(text.update_mask_book)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _predict(params, rest, x, *, graphdef):
  return jnp.argmax(nnx.merge(graphdef, params, rest).classify(x), -1)


def pretrain(net: Net, data: dict[str, np.ndarray], t, p, *, seed: int) -> dict[str, Any]:
  """Masked-LM pre-training of ``net`` in place (module docstring); returns the diagnostics."""
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  tx = _optimizer(float(p.learning_rate), int(p.steps))
  opt_state = tx.init(params)
  adversarial = p.masking == "adversarial"
  static = dict(graphdef=graphdef, adversarial=adversarial, content=int(t.content), tx=tx)
  x_all = data["x"]
  n = len(x_all)
  book = jnp.ones(x_all.shape, bool)
  rng = np.random.default_rng(seed + 1000)
  key = jax.random.key(seed + 2000)
  marker_hits = noise_hits = noise_seen = selected = 0
  losses = []
  t0 = time.time()
  for i in range(p.steps):
    idx = rng.integers(0, n, p.batch)
    key, k = jax.random.split(key)
    params, opt_state, loss, sel = _pretrain_step(params, opt_state, rest, jnp.asarray(x_all[idx]), book[idx], k,
                                                  **static)
    sel = np.asarray(sel)
    marker_hits += int((sel & data["marker"][idx]).sum())
    noise_hits += int((sel & data["noise"][idx]).sum())
    noise_seen += int(data["noise"][idx].sum())
    selected += int(sel.sum())
    losses.append(float(loss))
    if adversarial and (i + 1) % p.book_every == 0 and i + 1 < p.steps:
      scores = jnp.concatenate([_scores(params, rest, jnp.asarray(x_all[j:j + 512]), graphdef=graphdef)
                                for j in range(0, n, 512)])
      key, k = jax.random.split(key)
      book = _update_book(book, scores, key=k)
  nnx.update(net, params)
  return {"pretrain_loss_last": float(np.mean(losses[-max(1, p.steps // 10):])),
          # the share of marker (noise) positions that were selected (random masking: selections per row / length)
          "marker_mask_rate": marker_hits / (p.steps * p.batch),
          "noise_mask_rate": noise_hits / max(1, noise_seen),
          "masked_per_row": selected / (p.steps * p.batch),
          "frozen_share": float(1.0 - np.asarray(book).mean()),
          "pretrain_seconds": time.time() - t0}


def finetune(net: Net, train: dict[str, np.ndarray], tests: dict[str, dict[str, np.ndarray]], t, f, *,
             seed: int) -> dict[str, float]:
  """Fine-tunes ``net`` on ``train`` (mask fine-tuning at ``f.mask_rate``); returns test metrics."""
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  tx = _optimizer(float(f.learning_rate), int(f.steps))
  opt_state = tx.init(params)
  static = dict(graphdef=graphdef, mask_rate=float(f.mask_rate), content=int(t.content), tx=tx)
  rng = np.random.default_rng(seed + 3000)
  key = jax.random.key(seed + 4000)
  n = len(train["x"])
  for _ in range(f.steps):
    idx = rng.integers(0, n, f.batch)
    key, k = jax.random.split(key)
    params, opt_state, _ = _finetune_step(params, opt_state, rest, jnp.asarray(train["x"][idx]),
                                          jnp.asarray(train["y"][idx]), k, **static)
  out = {}
  for name, d in tests.items():
    pred = np.asarray(_predict(params, rest, jnp.asarray(d["x"]), graphdef=graphdef))
    correct = pred == d["y"]
    out[f"{name}_accuracy"] = float(correct.mean())
    if name == "bias_broken":
      agree = d["z"] == d["y"]
      out["marker_reliance"] = float(correct[agree].mean() - correct[~agree].mean())
  return out


def run_all(config) -> dict[str, Any]:
  """Every arm of one seed: two pre-trainings, four fine-tunings."""
  t, m, p, f = config.task, config.model, config.pretrain, config.finetune
  seed = int(config.seed)
  rng = np.random.default_rng(seed)
  pre = make_task(t, p.examples, rng=rng, bias=None)
  train = make_task(t, f.examples, rng=rng, bias=t.bias)
  tests = {"bias_broken": make_task(t, f.test_examples, rng=rng, bias=None),
           "in_distribution": make_task(t, f.test_examples, rng=rng, bias=t.bias)}
  vocab = t.content + 3  # content tokens, two markers, [MASK]
  t0 = time.time()
  per_arm: dict[str, Any] = {}
  for masking in MASKINGS:
    net = Net(vocab, m, rngs=nnx.Rngs(seed))
    diag = pretrain(net, pre, t, ml_collections.ConfigDict({**p.to_dict(), "masking": masking}), seed=seed)
    graphdef, pre_state = nnx.split(net)
    for rate in f.mask_rates:
      tuned = nnx.merge(graphdef, pre_state)  # a copy of the pre-trained net (fine-tuning rebinds its arrays)
      fcfg = ml_collections.ConfigDict({**f.to_dict(), "mask_rate": float(rate)})
      per_arm[f"{masking}/{float(rate)}"] = {**diag, **finetune(tuned, train, tests, t, fcfg, seed=seed)}
  return {"per_arm": per_arm, "train_marker_agreement": float((train["z"] == train["y"]).mean()),
          "label_balance": float(train["y"].mean()), "wall_seconds": time.time() - t0}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.pretrain.masking``, ``config.finetune.mask_rate``) from the seed's shared run."""
  masking, rate = config.pretrain.masking, float(config.finetune.mask_rate)
  if masking not in MASKINGS:
    raise ValueError(f"pretrain.masking: must be one of {list(MASKINGS)}, got {masking!r}")
  if rate not in [float(r) for r in config.finetune.mask_rates]:
    raise ValueError(f"finetune.mask_rate: must be one of finetune.mask_rates {list(config.finetune.mask_rates)}, "
                     f"got {rate}")
  shared, path = shared_run(run_all, config, workdir, prefix="adversarial-masking",
                            arm_keys=("pretrain.masking", "finetune.mask_rate"),
                            share=config.pretrain.share_runs)
  arm = shared["per_arm"][f"{masking}/{rate}"]
  return {**{k: v for k, v in shared.items() if k != "per_arm"}, **arm, "masking": masking, "mask_rate": rate,
          "shared_results": str(path)}


adversarial_masking_runner = caches_results(run)
adversarial_masking_runner.__name__ = "adversarial_masking_runner"
