r"""MEMO-style activation plans: per layer, which named activations to keep, offload or recompute.

MEMO (Efficiently Training 7B LLM with 1 Million Sequence Length on 8 GPUs, Zhao et al., 2024,
https://arxiv.org/abs/2407.12117; v3 title "Memo: Fine-grained Tensor Management For Ultra-long Context
LLM Training") starts from FlashAttention, whose activation memory grows linearly with the sequence
length while its compute grows quadratically, so at long lengths a layer's forward pass takes long
enough to hide copying its activations to host memory. MEMO keeps each layer's input, offloads the
other activations of a fraction ``alpha`` of the layer's tokens to the host after its forward pass
(fetching them back for the backward pass) and recomputes the rest ("token-wise recomputation and
swapping"), with

.. math::
  \alpha = \min\Big(1,\ \frac{T_\mathrm{fwd}\, B_\mathrm{host}}{S},\
                    \frac{M_\mathrm{host}}{L\, S}\Big),

``S`` the bytes of one layer's offloadable activations, ``T_fwd`` its forward time, ``B_host`` the
device-to-host bandwidth, ``M_host`` the host memory a device may use and ``L`` the layers (the swap
hides under compute and fits the host; read from the paper's section on token-wise recomputation and
swapping, not from the authors' code, which is not public). The offloaded tokens are the first
``alpha`` of each layer's (local) sequence: recomputing the last tokens needs the keys and values of
the earlier ones, which come back from the host. Its bi-level MIP for memory fragmentation has no
counterpart here (XLA plans the buffers).

In JAX the three fates are `jax.checkpoint` policies over names that `jax.ad_checkpoint.checkpoint_name`
gives the activations inside each `jaxdyn.models.Transformer` block (`ACTIVATION_NAMES`):
``save_only_these_names`` keeps, ``save_and_offload_only_these_names(..., offload_src="device",
offload_dst="pinned_host")`` offloads, and everything else is recomputed from the block's input. A
token-wise split tags the first ``head`` tokens of every sequence shard as ``name + "_head"`` (offloaded)
and the rest ``name + "_tail"`` (recomputed). Sequence sharding (tokens split over a mesh axis
``"seq"``) divides every per-token activation by the number of shards.

The planner (`plan_memory`)
--------------------------
Per device, with ``t_d = seq_len / seq_shards`` tokens and ``a_n`` the bytes per token of activation
``n`` (`activation_bytes`, from the model's shapes), the predicted peak is

.. math::
  \mathrm{peak} = t_d\Big(\max\big(b_\mathrm{plain},\ b_\mathrm{remat} + \max_{l \in C} r_l\big)
  + \sum_{l \notin C} p + \sum_{l \in C} \big(q + k_l + o_l\big)\Big),

with ``C`` the checkpointed layers, ``k_l``, ``o_l``, ``r_l`` the kept, offloaded and recomputed bytes
per token of layer ``l`` (``o_l`` counts only where offloaded bytes stay on the device: XLA:CPU, see
below), and the per-token overheads ``p`` (a plain layer's saved activations), ``q`` (a checkpointed
layer's saved input and the unnamed values the backward holds), ``b_plain`` and ``b_remat`` (embedding,
logits, loss and the backward's working set) profiled once per step (`profile_step`: the step compiled
at depth 1 and 2, plain and fully recomputed; MEMO profiles its layers too). The planner starts with
every layer plain and, while the prediction exceeds the budget, lowers the layers one at a time (layer
0 first, round robin): plain, then checkpointed keeping every name, then dropping names in
`KEEP_ORDER`'s reverse (the cheapest to recompute per byte first). Dropped names are offloaded for the
fraction ``alpha`` of tokens when there is host memory and recomputed otherwise. Measured on XLA:CPU
with `flash_causal_attention` (dim 64, depth 4, 4 heads, profile and plan at the same length), the
prediction was within 0.0% (plain step), 0.0% and 1.2% (mixed plans) of
``memory_analysis().temp_size_in_bytes`` on 1 device at 4,096 tokens, and within 0.0%, 2.1%, 3.1% and
2.4% on 8 sequence-sharded devices at 4,096 tokens (plans with token-wise offload splits among them);
``tests/memory/test_plans.py`` asserts 15% on 8 devices. A profile taken at one length and used at
another is off by the per-token share of the length-independent bytes (parameters and their
gradients): 1.84 MB predicted against 1.31 MB measured at 512 tokens from a profile at 4,096.

Sequence sharding here is plain GSPMD: tokens are split over ``"seq"`` and XLA all-gathers each layer's
keys and values for attention, so every device holds ``2 t D`` floats per layer on top of its ``t/n``
share (no ring attention). The profile includes them; they are why the per-device memory of the
sharded steps grows faster than ``t/n``.

With dense attention (`jaxdyn.models.causal_attention`) the saved score-sized buffers dominate at any
interesting length and XLA's schedule makes them hard to predict from shapes (the plain step kept
2.3 score matrices per layer on 8 devices, 3.3 on one); use a linear-memory attention such as
`flash_causal_attention`, MEMO's premise, when planning.

Host offload and remat on CPU (jax / jaxlib 0.10.2, checked here)
----------------------------------------------------------------
- XLA:CPU undoes ``jax.checkpoint``: its ``cse_barrier_expander`` pass removes the optimization
  barriers JAX puts around recomputation, and CSE then merges the recomputation with the forward pass.
  A chain of 8 checkpointed dense layers compiled to the plain step's temp bytes under every policy
  (``nothing_saveable`` included); the Transformer with `flash_causal_attention` (depth 4, 2,048
  tokens) saved 4.5% (what CSE cannot merge inside the attention's scans). With
  ``XLA_FLAGS=--xla_disable_hlo_passes=cse_barrier_expander`` (`CPU_REMAT_XLA_FLAG`) the policies take
  effect with the same values: 41% saved by ``nothing_saveable`` there. The flag is per process (set
  it before JAX starts). Whether GPU or TPU pipelines need it was not checked (no accelerator here).
- A CPU device lists the memory kinds ``device``, ``pinned_host`` and ``unpinned_host``, and an offload
  policy (``offload_dst="pinned_host"`` or ``"unpinned_host"``) traces, compiles and gives the exact
  gradient, but on CPU ``device_put`` to another memory kind inside ``jit`` lowers to nothing (only TPU
  and GPU emit the ``annotate_device_placement`` custom calls): the offloaded values stay in the one
  host RAM and ``memory_analysis`` counts them in ``temp_size_in_bytes``, with
  ``host_temp_size_in_bytes`` 0. So on CPU an offload saves no memory; plan with ``host_budget=0``
  there (the planner then recomputes) and read `MemoryPlan.predicted_resident_bytes` (offloaded bytes
  counted on the device) against CPU measurements. On a GPU the offloaded bytes should move to host
  memory (``predicted_peak_bytes``); that is not verified here.

References:
  Zhao et al., "Efficiently Training 7B LLM with 1 Million Sequence Length on 8 GPUs" (MEMO), 2024.
  https://arxiv.org/abs/2407.12117
  Dao, "FlashAttention-2", 2023. https://arxiv.org/abs/2307.08691
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdyn import _validation
from jaxdyn.models._transformer import ACTIVATION_NAMES, Transformer

__all__ = ["ACTIVATION_NAMES", "CPU_REMAT_XLA_FLAG", "KEEP_ORDER", "LayerPlan", "MemoryPlan", "StepProfile",
           "activation_bytes", "flash_causal_attention", "lm_train_step", "plan_memory", "profile_step",
           "step_memory"]

CPU_REMAT_XLA_FLAG = "--xla_disable_hlo_passes=cse_barrier_expander"
# Kept longest first: the attention output (recomputing it reruns attention, quadratic in the length),
# then the projections (one matmul each), then the cheap ones (a norm, an add, an activation).
KEEP_ORDER = ("attn_out", "q", "k", "v", "mlp_up", "resid_mid", "mlp_hidden", "mlp_in", "attn_in")
_HOST = "pinned_host"


# --- a FlashAttention-style causal attention (activation memory linear in the length) -------------

def flash_causal_attention(block: int = 128):
  r"""A causal attention function whose saved activations are linear in the sequence length.

  The forward pass runs FlashAttention's online softmax over key blocks of ``block`` keys
  (``m' = max(m, max_j s_ij)``, ``l' = e^{m - m'} l + sum_j e^{s_ij - m'}``,
  ``acc' = e^{m - m'} acc + sum_j e^{s_ij - m'} v_j``, ``o = acc / l``) and saves only q, k, v, o and
  ``lse = m + log l``; the backward pass (a custom VJP) recomputes each block's probabilities
  ``p_ij = exp(s_ij - lse_i)`` and takes ``dv = p^T do``, ``ds = p (do v^T - delta)``, ``dq = c ds k``,
  ``dk = c ds^T q`` with ``delta_i = do_i . o_i``. Masked by position like
  `jaxdyn.models.causal_attention` (``0 <= k_pos <= q_pos``; a row with no key gives zeros, a row whose
  allowed scores are all -inf gives NaN), which it equals to float rounding; non-finite inputs
  propagate. MEMO's premise is this linear memory (Dao, FlashAttention-2).

  Args:
    block: keys per block; the key length must be a multiple of it.

  Returns:
    ``fn(q, k, v, *, q_positions, k_positions)``, the Transformer's attention-function interface.

  Example:
    >>> fn = flash_causal_attention(4)
    >>> q = jnp.ones((1, 8, 2, 4)); p = jnp.arange(8)
    >>> fn(q, q, q, q_positions=p, k_positions=p).shape
    (1, 8, 2, 4)
  """
  block = _validation.check_int("block", block, lower=1)

  def fn(q, k, v, *, q_positions, k_positions):
    for name, x in (("q", q), ("k", k), ("v", v)):
      _validation.check_ndim(name, x, 4)
    if jnp.shape(k) != jnp.shape(v) or jnp.shape(q)[::2] != jnp.shape(k)[::2] or jnp.shape(q)[3] != jnp.shape(k)[3]:
      raise ValueError(f"k: must be (batch, k_len, heads, head_dim) matching q {jnp.shape(q)} and v, got "
                       f"{jnp.shape(k)} and v {jnp.shape(v)}")
    if jnp.shape(k)[1] % block:
      raise ValueError(f"k: its length {jnp.shape(k)[1]} must be a multiple of block={block}")
    for name, pos, n in (("q_positions", q_positions, jnp.shape(q)[1]), ("k_positions", k_positions, jnp.shape(k)[1])):
      if jnp.shape(pos) != (n,) or not jnp.issubdtype(jnp.asarray(pos).dtype, jnp.integer):
        raise ValueError(f"{name}: must be integer positions of shape ({n},), got {jnp.shape(pos)}")
    return _flash(q, k, v, jnp.asarray(q_positions, jnp.int32), jnp.asarray(k_positions, jnp.int32), block)

  fn.block = block
  return fn


def _chunks(x, block):
  return x.reshape(x.shape[0], x.shape[1] // block, block, *x.shape[2:]).swapaxes(0, 1)


def _block_scores(q, kb, qp, kpb, scale):
  s = jnp.einsum("bqhd,bkhd->bhqk", q, kb, preferred_element_type=jnp.float32) * scale
  return s, (kpb[None, :] >= 0) & (kpb[None, :] <= qp[:, None])


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _flash(q, k, v, qp, kp, block):
  return _flash_fwd(q, k, v, qp, kp, block)[0]


def _flash_fwd(q, k, v, qp, kp, block):
  b, tq, h, d = q.shape
  scale = 1.0 / math.sqrt(d)

  def step(carry, xs):
    m, l, acc, seen = carry
    kb, vb, kpb = xs
    s, mask = _block_scores(q, kb, qp, kpb, scale)
    s = jnp.where(mask, s, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(s, axis=-1))
    ref = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # a row with no finite score yet: exp(-inf - 0) = 0
    p = jnp.exp(s - ref[..., None])
    corr = jnp.exp(jnp.where(jnp.isfinite(m), m, ref) - ref)
    acc = acc * corr[..., None] + jnp.einsum("bhqk,bkhd->bhqd", p, vb.astype(jnp.float32))
    return (m_new, l * corr + jnp.sum(p, axis=-1), acc, seen | jnp.any(mask, axis=-1)), None

  init = (jnp.full((b, h, tq), -jnp.inf, jnp.float32), jnp.zeros((b, h, tq), jnp.float32),
          jnp.zeros((b, h, tq, d), jnp.float32), jnp.zeros((tq,), bool))
  (m, l, acc, seen), _ = jax.lax.scan(step, init, (_chunks(k, block), _chunks(v, block), kp.reshape(-1, block)))
  # A row with allowed keys whose scores are all -inf has l = 0: 0/0 = NaN, as in causal_attention;
  # a row with no allowed key gives zeros.
  out = jnp.where(seen[:, None], acc / l[..., None], 0.0).transpose(0, 2, 1, 3).astype(v.dtype)
  lse = jnp.where(seen, jnp.where(jnp.isfinite(m), m, 0.0) + jnp.log(l), jnp.inf)  # exp(s - inf) = 0
  return out, (q, k, v, qp, kp, out, lse)


def _flash_bwd(block, res, dout):
  q, k, v, qp, kp, out, lse = res
  scale = 1.0 / math.sqrt(q.shape[-1])
  do = dout.astype(jnp.float32)
  delta = jnp.einsum("bqhd,bqhd->bhq", do, out.astype(jnp.float32))

  def step(dq, xs):
    kb, vb, kpb = xs
    s, mask = _block_scores(q, kb, qp, kpb, scale)
    p = jnp.where(mask, jnp.exp(s - lse[..., None]), 0.0)
    dv = jnp.einsum("bhqk,bqhd->bkhd", p, do)
    ds = p * (jnp.einsum("bqhd,bkhd->bhqk", do, vb.astype(jnp.float32)) - delta[..., None]) * scale
    dq = dq + jnp.einsum("bhqk,bkhd->bqhd", ds, kb.astype(jnp.float32))
    return dq, (jnp.einsum("bhqk,bqhd->bkhd", ds, q.astype(jnp.float32)), dv)

  dq, (dk, dv) = jax.lax.scan(step, jnp.zeros(q.shape, jnp.float32),
                              (_chunks(k, block), _chunks(v, block), kp.reshape(-1, block)))
  unchunk = lambda x: x.swapaxes(0, 1).reshape(k.shape)
  return dq.astype(q.dtype), unchunk(dk).astype(k.dtype), unchunk(dv).astype(v.dtype), None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


# --- activation sizes -------------------------------------------------------------------------------

def _check_model(model):
  if not isinstance(model, Transformer):
    raise TypeError(f"model: must be a jaxdyn.models.Transformer, got {type(model).__name__}")


def _check_step(model, seq_len, batch, seq_shards) -> tuple[int, int, int]:
  """The model and the step's sizes, checked: ``seq_len`` a multiple of ``seq_shards``."""
  _check_model(model)
  seq_len = _validation.check_int("seq_len", seq_len, lower=1)
  batch = _validation.check_int("batch", batch, lower=1)
  seq_shards = _validation.check_int("seq_shards", seq_shards, lower=1)
  if seq_len % seq_shards:
    raise ValueError(f"seq_len: must be a multiple of seq_shards={seq_shards}, got {seq_len}")
  return seq_len, batch, seq_shards


def activation_bytes(model: Transformer, *, batch: int = 1) -> dict[str, int]:
  r"""Bytes per token of each named activation of one block (`ACTIVATION_NAMES`), for ``batch`` sequences.

  From the model's shapes, with ``D = dim``, ``F = mlp_ratio * dim`` and the parameter dtype's item
  size ``s``: ``attn_in``, ``q``, ``k``, ``v``, ``attn_out``, ``resid_mid``, ``mlp_in``: ``batch D s``
  each; ``mlp_up``: ``batch 2F s`` (SwiGLU's gate and value; ``batch F s`` for GELU); ``mlp_hidden``:
  ``batch F s``. A layer holds ``bytes * tokens`` of each (``tokens`` per device under sequence sharding).

  Args:
    model: a `jaxdyn.models.Transformer`.
    batch: sequences per step (>= 1).

  Returns:
    ``{name: bytes per token}`` in `ACTIVATION_NAMES` order.

  Example:
    >>> m = Transformer(dim=32, depth=1, num_heads=2, mlp_ratio=2, rngs=nnx.Rngs(0))
    >>> activation_bytes(m)["mlp_up"]
    512
  """
  _check_model(model)
  batch = _validation.check_int("batch", batch, lower=1)
  blk = model.blocks[0]
  size = jnp.dtype(blk.qkv.kernel[...].dtype).itemsize
  d, f = model.dim, blk.down.in_features
  up = blk.up.out_features
  per = dict(attn_in=d, q=d, k=d, v=d, attn_out=d, resid_mid=d, mlp_in=d, mlp_up=up, mlp_hidden=f)
  return {n: batch * per[n] * size for n in ACTIVATION_NAMES}


# --- plans ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerPlan:
  """One block's plan: plain (``checkpointed=False``) or under ``jax.checkpoint`` with a policy.

  Attributes:
    checkpointed: False: the block runs plainly and its backward keeps all it saves.
    keep: names saved on the device (whole sequence).
    offload: names offloaded to ``pinned_host`` for the first ``head`` tokens of each of ``chunks``
      sequence chunks (all tokens when ``head == tokens_per_chunk``) and recomputed for the rest.
    recompute: names recomputed whole in the backward pass.
    chunks: sequence shards the token split is local to.
    head: offloaded tokens per chunk.
    tokens_per_chunk: tokens per chunk (``seq_len / chunks``).
    kept_bytes, offloaded_bytes, recomputed_bytes: per device, this layer's named activations.
  """

  checkpointed: bool
  keep: tuple[str, ...] = ()
  offload: tuple[str, ...] = ()
  recompute: tuple[str, ...] = ()
  chunks: int = 1
  head: int = 0
  tokens_per_chunk: int = 0
  kept_bytes: int = 0
  offloaded_bytes: int = 0
  recomputed_bytes: int = 0

  @property
  def offload_fraction(self) -> float:
    """MEMO's alpha: the fraction of tokens whose ``offload`` names go to the host."""
    return self.head / self.tokens_per_chunk if self.offload and self.tokens_per_chunk else 0.0

  @property
  def _split(self) -> bool:
    return bool(self.offload) and 0 < self.head < self.tokens_per_chunk

  @property
  def policy(self):
    """The ``jax.checkpoint`` policy (None for a plain block)."""
    if not self.checkpointed:
      return None
    if self.head == 0 or not self.offload:
      return jax.checkpoint_policies.save_only_these_names(*self.keep)
    off = [n + "_head" for n in self.offload] if self._split else list(self.offload)
    return jax.checkpoint_policies.save_and_offload_only_these_names(
        names_which_can_be_saved=list(self.keep), names_which_can_be_offloaded=off, offload_src="device",
        offload_dst=_HOST)

  @property
  def token_split(self):
    """``(names, chunks, head)`` for `jaxdyn.models.Transformer`'s ``remat``, or None."""
    return (self.offload, self.chunks, self.head) if self._split else None


@dataclasses.dataclass(frozen=True)
class StepProfile:
  """Per-token bytes (per device) of what a train step holds besides the named activations.

  Attributes:
    plain_layer: a plain layer's saved activations.
    remat_layer: a checkpointed layer's saved input and unnamed values.
    plain_base: everything else in the plain step (embedding, logits, loss, backward working set).
    remat_base: the same in a step with checkpointed layers, without the recomputed names.
    seq_len, batch, seq_shards: where it was measured.
  """

  plain_layer: float
  remat_layer: float
  plain_base: float
  remat_base: float
  seq_len: int
  batch: int
  seq_shards: int


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Per-layer plans and the predicted per-device peak of a train step.

  Attributes:
    layers: one `LayerPlan` per block.
    seq_len, batch, seq_shards: the step planned (``seq_len / seq_shards`` tokens per device).
    device_budget: bytes per device the plan must fit (``math.inf``: unlimited).
    host_budget: host bytes per device for offloaded activations.
    predicted_peak_bytes: the predicted device peak with offloaded activations on the host.
    predicted_resident_bytes: the same with offloaded activations counted on the device (what XLA:CPU
      allocates: its offload is a no-op).
    host_bytes: offloaded bytes per device.
  """

  layers: tuple[LayerPlan, ...]
  seq_len: int
  batch: int
  seq_shards: int
  device_budget: float
  host_budget: float
  predicted_peak_bytes: int
  predicted_resident_bytes: int
  host_bytes: int

  @property
  def remat(self) -> tuple[LayerPlan | None, ...]:
    """The ``remat=`` argument of `jaxdyn.models.Transformer` (None for plain layers)."""
    return tuple(lp if lp.checkpointed else None for lp in self.layers)

  @property
  def is_plain(self) -> bool:
    return not any(lp.checkpointed for lp in self.layers)

  def table(self) -> str:
    """A markdown table: per layer the mode, kept / offloaded / recomputed names and bytes, then totals."""
    mib = lambda b: f"{b / 2**20:.2f}"
    rows = ["| layer | mode | keep | offload (alpha) | recompute | kept MiB | offloaded MiB | recomputed MiB |",
            "|---|---|---|---|---|---|---|---|"]
    for i, lp in enumerate(self.layers):
      if not lp.checkpointed:
        rows.append(f"| {i} | plain | all | - | - | {mib(lp.kept_bytes)} | 0.00 | 0.00 |")
        continue
      off = f"{', '.join(lp.offload)} ({lp.offload_fraction:.2f})" if lp.offload else "-"
      rows.append(f"| {i} | checkpoint | {', '.join(lp.keep) or '-'} | {off} | {', '.join(lp.recompute) or '-'} | "
                  f"{mib(lp.kept_bytes)} | {mib(lp.offloaded_bytes)} | {mib(lp.recomputed_bytes)} |")
    finite = math.isfinite(self.device_budget)
    budget = f"{mib(self.device_budget)} MiB" if finite else "unlimited"
    rows.append(f"\nPredicted peak per device: {mib(self.predicted_peak_bytes)} MiB (offloaded on the host; "
                f"{mib(self.predicted_resident_bytes)} MiB with them on the device, as on XLA:CPU), host "
                f"{mib(self.host_bytes)} MiB, budget {budget}; {self.seq_len} tokens x {self.batch} over "
                f"{self.seq_shards} sequence shard(s).")
    return "\n".join(rows)

  to_markdown = table


def _layer(level, sizes, tokens, chunks, alpha):
  """The layer plan at ``level``: 0 plain, 1 checkpoint keeping all, 1 + j dropping KEEP_ORDER's last j."""
  # ``tokens`` per device = one chunk per sequence shard: the split is local to each device's tokens.
  total = sum(sizes.values()) * tokens
  if level == 0:
    return LayerPlan(False, keep=ACTIVATION_NAMES, kept_bytes=total, tokens_per_chunk=tokens, chunks=chunks)
  keep = KEEP_ORDER[:len(KEEP_ORDER) - (level - 1)]
  dropped = tuple(n for n in ACTIVATION_NAMES if n not in keep)
  head = int(math.floor(alpha * tokens)) if dropped else 0
  offload = dropped if head > 0 else ()
  recompute = tuple(n for n in dropped if n not in offload or head < tokens)
  off_bytes = sum(sizes[n] for n in offload) * head
  drop_bytes = sum(sizes[n] for n in dropped) * tokens
  return LayerPlan(True, keep=tuple(n for n in ACTIVATION_NAMES if n in keep), offload=offload, recompute=recompute,
                   chunks=chunks, head=head, tokens_per_chunk=tokens,
                   kept_bytes=sum(sizes[n] for n in keep) * tokens, offloaded_bytes=off_bytes,
                   recomputed_bytes=drop_bytes - off_bytes)


def _predict(layers, profile, tokens):
  """(peak with offload on the host, peak with offload resident) in bytes, per device."""
  ckpt = [lp for lp in layers if lp.checkpointed]
  plain = len(layers) - len(ckpt)
  base = profile.plain_base * tokens
  if ckpt:
    base = max(base, profile.remat_base * tokens + max(lp.recomputed_bytes for lp in ckpt))
  saved = plain * profile.plain_layer * tokens + sum(profile.remat_layer * tokens + lp.kept_bytes for lp in ckpt)
  host = sum(lp.offloaded_bytes for lp in ckpt)
  return int(round(base + saved)), int(round(base + saved + host))


def _check_profile(profile, model, batch, seq_shards):
  if not isinstance(profile, StepProfile):
    raise TypeError(f"profile: must be a StepProfile (profile_step), got {type(profile).__name__}")
  if profile.batch != batch or profile.seq_shards != seq_shards:
    raise ValueError(f"profile: was measured at batch={profile.batch}, seq_shards={profile.seq_shards}; the plan "
                     f"asks batch={batch}, seq_shards={seq_shards}")


def plan_memory(model: Transformer, *, seq_len: int, device_budget: float, profile: StepProfile, batch: int = 1,
                seq_shards: int = 1, host_budget: float = 0.0, host_bandwidth: float | None = None,
                device_flops: float | None = None) -> MemoryPlan:
  r"""Per-layer keep / offload / recompute plans that fit ``device_budget`` bytes per device.

  Starts from the plain step (every layer plain) and, while the predicted peak (the module docstring's
  formula) exceeds the budget, lowers one layer a level, round robin from layer 0: plain, then
  checkpointed keeping every name, then dropping names from the end of `KEEP_ORDER`. Dropped names are
  offloaded for MEMO's fraction of tokens

  .. math:: \alpha = \min\Big(1, \frac{M_\mathrm{host}}{\sum_l S_l}, \frac{T_\mathrm{fwd} B}{S}\Big),

  ``S_l`` the dropped bytes of checkpointed layer ``l`` (``S`` the largest), ``M_host = host_budget``,
  ``T_fwd`` the layer's forward FLOPs ``2 b t_d (4 D^2 + (U + F) D) + 4 b t_d t D`` (batch ``b``; projections,
  MLP of up width ``U`` and hidden width ``F``, dense attention) over ``device_flops`` and ``B =
  host_bandwidth`` (the last term only when both are given), and recomputed for the rest. With
  ``device_budget=math.inf`` the plan is the plain step.

  Args:
    model: the `jaxdyn.models.Transformer` to plan for.
    seq_len: tokens per sequence (a multiple of ``seq_shards``).
    device_budget: bytes per device (> 0; ``math.inf``: unlimited).
    profile: the step's overheads (`profile_step`) at this ``batch`` and ``seq_shards``.
    batch: sequences per step.
    seq_shards: devices the sequence is split over.
    host_budget: host bytes per device for offloaded activations (0: recompute only, as on CPU where
      offloading saves nothing).
    host_bandwidth: device-to-host bytes per second (with ``device_flops``: the overlap bound on alpha).
    device_flops: FLOP/s of a device.

  Returns:
    A `MemoryPlan`.

  Raises:
    ValueError: naming ``device_budget`` when even recomputing every name does not fit.
  """
  seq_len, batch, seq_shards = _check_step(model, seq_len, batch, seq_shards)
  device_budget = _validation.check_real("device_budget", device_budget, lower=0.0, lower_open=True, finite=False)
  host_budget = _validation.check_real("host_budget", host_budget, lower=0.0, finite=False)
  if host_bandwidth is not None:
    host_bandwidth = _validation.check_real("host_bandwidth", host_bandwidth, lower=0.0, lower_open=True)
  if device_flops is not None:
    device_flops = _validation.check_real("device_flops", device_flops, lower=0.0, lower_open=True)
  _check_profile(profile, model, batch, seq_shards)
  sizes = activation_bytes(model, batch=batch)
  tokens = seq_len // seq_shards
  depth = model.depth
  max_level = 1 + len(KEEP_ORDER)
  levels = [0] * depth

  def build(levels):
    dropped = [sum(sizes[n] for n in ACTIVATION_NAMES if n not in KEEP_ORDER[:len(KEEP_ORDER) - (lv - 1)]) * tokens
               for lv in levels if lv > 0]
    alpha = 0.0
    if dropped and sum(dropped) > 0 and host_budget > 0:
      alpha = min(1.0, host_budget / sum(dropped))
      if host_bandwidth is not None and device_flops is not None:
        d, f, up = model.dim, model.blocks[0].down.in_features, model.blocks[0].up.out_features
        flops = 2 * batch * tokens * (4 * d * d + (up + f) * d) + 4 * batch * tokens * seq_len * d
        alpha = min(alpha, flops / device_flops * host_bandwidth / max(dropped))
    layers = tuple(_layer(lv, sizes, tokens, seq_shards, alpha) for lv in levels)
    return layers, _predict(layers, profile, tokens)

  layers, (peak, resident) = build(levels)
  i = 0
  while peak > device_budget:
    if all(lv == max_level for lv in levels):
      raise ValueError(f"device_budget: must be at least {peak} bytes (the prediction with every name of every "
                       f"layer recomputed or offloaded at seq_len={seq_len}, batch={batch}, seq_shards={seq_shards}, "
                       f"host_budget={host_budget:g}), got {device_budget:g}")
    target = min(levels)
    while levels[i % depth] != target:
      i += 1
    levels[i % depth] += 1
    i += 1
    layers, (peak, resident) = build(levels)
  host = sum(lp.offloaded_bytes for lp in layers)
  return MemoryPlan(layers=layers, seq_len=seq_len, batch=batch, seq_shards=seq_shards, device_budget=device_budget,
                    host_budget=host_budget, predicted_peak_bytes=peak, predicted_resident_bytes=resident,
                    host_bytes=host)


# --- the step, its memory and its profile -------------------------------------------------------------

def _mesh(seq_shards):
  devices = jax.devices()
  if seq_shards > len(devices):
    raise ValueError(f"seq_shards: must be at most the {len(devices)} devices, got {seq_shards}")
  return Mesh(np.array(devices[:seq_shards]), ("seq",))


def lm_train_step(graphdef, *, remat=None, learning_rate: float = 0.1):
  r"""An SGD train step of next-token cross-entropy, ``(state, tokens, targets) -> (state, loss)``.

  .. math:: \mathcal{L} = -\frac{1}{B T} \sum_{b, t} \log \mathrm{softmax}(f(x)_{b t})_{y_{b t}}, \qquad
     \theta \leftarrow \theta - \eta \nabla_\theta \mathcal{L}

  Args:
    graphdef: ``nnx.split(model)[0]`` of a `jaxdyn.models.Transformer`.
    remat: the model's per-block ``remat`` (`MemoryPlan.remat`), or None.
    learning_rate: ``eta`` (> 0).

  Returns:
    The un-jitted step; ``tokens`` and ``targets`` are ``(batch, seq)`` integer ids.
  """
  learning_rate = _validation.check_real("learning_rate", learning_rate, lower=0.0, lower_open=True)

  def loss_fn(state, tokens, targets):
    logits = nnx.merge(graphdef, state)(tokens, remat=remat)
    lp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(lp, targets[..., None], axis=-1))

  def step(state, tokens, targets):
    loss, g = jax.value_and_grad(loss_fn)(state, tokens, targets)
    return jax.tree.map(lambda p, d: p - learning_rate * d, state, g), loss

  return step


def _compiled(model, seq_len, batch, seq_shards, remat):
  graphdef, state = nnx.split(model)
  mesh = _mesh(seq_shards)
  rep = NamedSharding(mesh, P())
  tok = jax.ShapeDtypeStruct((batch, seq_len), jnp.int32, sharding=NamedSharding(mesh, P(None, "seq")))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
  step = jax.jit(lm_train_step(graphdef, remat=remat), out_shardings=(rep, rep))
  return step.lower(abstract, tok, tok).compile()


def step_memory(model: Transformer, *, seq_len: int, batch: int = 1, seq_shards: int = 1,
                plan: MemoryPlan | None = None) -> dict[str, int]:
  """The compiled `lm_train_step`'s per-device memory (``memory_analysis``) under ``plan``.

  Tokens are sharded over a ``"seq"`` mesh axis of the first ``seq_shards`` devices, parameters
  replicated. Nothing runs; only the compile.

  Args:
    model: a `jaxdyn.models.Transformer`.
    seq_len: tokens per sequence (a multiple of ``seq_shards``).
    batch: sequences.
    seq_shards: devices the sequence is split over.
    plan: a `MemoryPlan` for this model, length, batch and sharding, or None (the plain step).

  Returns:
    ``{"temp", "argument", "output", "host_temp"}`` bytes per device.
  """
  seq_len, batch, seq_shards = _check_step(model, seq_len, batch, seq_shards)
  if plan is not None:
    if not isinstance(plan, MemoryPlan):
      raise TypeError(f"plan: must be a MemoryPlan (plan_memory) or None, got {type(plan).__name__}")
    if (plan.seq_len, plan.batch, plan.seq_shards, len(plan.layers)) != (seq_len, batch, seq_shards, model.depth):
      raise ValueError(f"plan: is for seq_len={plan.seq_len}, batch={plan.batch}, seq_shards={plan.seq_shards}, "
                       f"{len(plan.layers)} layers; asked seq_len={seq_len}, batch={batch}, seq_shards={seq_shards}, "
                       f"{model.depth} layers")
  m = _compiled(model, seq_len, batch, seq_shards, None if plan is None else plan.remat).memory_analysis()
  return {"temp": int(m.temp_size_in_bytes), "argument": int(m.argument_size_in_bytes),
          "output": int(m.output_size_in_bytes), "host_temp": int(m.host_temp_size_in_bytes)}


def _copy(model: Transformer, depth: int) -> Transformer:
  blk = model.blocks[0]
  return Transformer(model.vocab_size, dim=model.dim, depth=depth, num_heads=model.num_heads,
                     mlp_ratio=blk.down.in_features // model.dim,
                     norm="rmsnorm" if isinstance(blk.norm1, nnx.RMSNorm) else "layernorm", mlp=blk.mlp,
                     attention_fns=model.attention_fns[0], rope_base=model.rope_base, rngs=nnx.Rngs(0))


def profile_step(model: Transformer, *, seq_len: int, batch: int = 1, seq_shards: int = 1) -> StepProfile:
  r"""Measures a `StepProfile`: `step_memory`'s temp bytes of 2- and 3-block copies of ``model``.

  With ``P_k`` the plain step at depth ``k`` and ``R_k`` the step whose blocks save nothing (every name
  recomputed), per token per device (``t_d = seq_len / seq_shards``): ``plain_layer = (P_3 - P_2)/t_d``,
  ``plain_base = P_2/t_d - 2 plain_layer``, ``remat_layer = (R_3 - R_2)/t_d``, ``remat_base = R_2/t_d -
  2 remat_layer - sum_n a_n`` (one layer's recomputed names, `activation_bytes`). Depth 1 is not used: a
  single checkpointed block is recomputed right after its forward pass and saves nothing (measured on
  XLA:CPU; from depth 2 on, the remat step grows by the same bytes per block). The copies have
  ``model``'s sizes and its first block's attention function. On XLA:CPU, compile under
  `CPU_REMAT_XLA_FLAG`, or the profile shows that checkpointing saves nothing (it does not there).

  Args:
    model: a `jaxdyn.models.Transformer`.
    seq_len: tokens per sequence (a multiple of ``seq_shards``); per-token overheads are close to
      constant in the length when attention memory is linear (`flash_causal_attention`), so a short
      profile can plan a long sequence.
    batch: sequences.
    seq_shards: devices the sequence is split over.

  Returns:
    A `StepProfile`.
  """
  seq_len, batch, seq_shards = _check_step(model, seq_len, batch, seq_shards)
  tokens = seq_len // seq_shards
  nothing = jax.checkpoint_policies.nothing_saveable
  temp = {}
  for depth in (2, 3):
    m = _copy(model, depth)
    for mode, remat in (("plain", None), ("remat", (nothing,) * depth)):
      temp[mode, depth] = _compiled(m, seq_len, batch, seq_shards, remat).memory_analysis().temp_size_in_bytes
  names = sum(activation_bytes(model, batch=batch).values())
  plain_layer = (temp["plain", 3] - temp["plain", 2]) / tokens
  remat_layer = (temp["remat", 3] - temp["remat", 2]) / tokens
  return StepProfile(plain_layer=plain_layer, remat_layer=remat_layer,
                     plain_base=temp["plain", 2] / tokens - 2 * plain_layer,
                     remat_base=temp["remat", 2] / tokens - 2 * remat_layer - names,
                     seq_len=seq_len, batch=batch, seq_shards=seq_shards)
