"""LongGen hybrid stacks: layer plans, position-masked sparse attention, ring caches and their size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn.attention import (
    dense_masked_attention,
    hybrid_attention_fns,
    hybrid_cache,
    hybrid_cache_sizes,
    kv_cache_bytes,
    layer_plan,
    sink_window_attention,
    sink_window_mask,
)
from jaxdyn.models import Transformer, causal_attention, generate


@pytest.mark.parametrize("depth,full", [(3, [1]), (6, [2, 3]), (9, [3, 4, 5]), (12, [4, 5, 6, 7]), (1, [0])])
def test_middle_plan_puts_a_third_full_in_the_middle(depth, full):
  plan = layer_plan(depth)
  assert [i for i, p in enumerate(plan) if p == "full"] == full


def test_other_placements_and_fractions():
  assert layer_plan(6, placement="bottom") == ("full", "full") + ("sparse",) * 4
  assert layer_plan(6, placement="top") == ("sparse",) * 4 + ("full", "full")
  assert [i for i, p in enumerate(layer_plan(9, placement="interleave")) if p == "full"] == [1, 4, 7]
  assert layer_plan(4, full_fraction=0.0) == ("sparse",) * 4
  assert layer_plan(4, full_fraction=1.0) == ("full",) * 4
  assert layer_plan(10, full_fraction=0.01).count("full") == 1  # a positive fraction keeps one full layer


@pytest.mark.parametrize("sink,window,offset", [(0, 3, 0), (2, 3, 0), (1, 4, 5), (3, 1, 2)])
def test_sink_window_attention_equals_the_dense_reference_on_the_mask(sink, window, offset):
  q_len, k_len = 7, 7 + offset
  q = jax.random.normal(jax.random.key(0), (2, q_len, 2, 8))
  k, v = jax.random.normal(jax.random.key(1), (2, 2, k_len, 2, 8))
  out = sink_window_attention(sink, window)(q, k, v, q_positions=jnp.arange(offset, offset + q_len),
                                             k_positions=jnp.arange(k_len))
  ref = dense_masked_attention(q, k, v, sink_window_mask(q_len, k_len, sink=sink, window=window, q_offset=offset))
  np.testing.assert_allclose(out, ref, atol=1e-6)


def test_sink_window_attention_reads_positions_not_slots_and_skips_empty_slots():
  fn = sink_window_attention(1, 2)
  q = jax.random.normal(jax.random.key(0), (1, 1, 1, 4))
  k, v = jax.random.normal(jax.random.key(1), (2, 1, 5, 1, 4))
  # A ring: slots hold positions [0, 9, 7, 8, -1]; the query at 9 reads the sink 0, and 8, 9 (window 2).
  slots = jnp.array([0, 9, 7, 8, -1])
  out = fn(q, k, v, q_positions=jnp.array([9]), k_positions=slots)
  keep = np.array([True, True, False, True, False])
  ref = dense_masked_attention(q, k[:, keep], v[:, keep])
  np.testing.assert_allclose(out, ref, atol=1e-6)


def _model(depth=3, plan=None, sink=2, window=4):
  plan = plan or layer_plan(depth)
  fns = hybrid_attention_fns(plan, sink=sink, window=window)
  return Transformer(vocab_size=32, dim=16, depth=depth, num_heads=2, attention_fns=fns, rngs=nnx.Rngs(0)), plan


def test_hybrid_attention_fns_pick_full_and_sparse_per_layer():
  fns = hybrid_attention_fns(("sparse", "full", "sparse"), sink=2, window=4)
  assert fns[1] is causal_attention and fns[0] is fns[2] and (fns[0].sink, fns[0].window) == (2, 4)


def test_whole_sequence_kernel_path_equals_the_positional_path_values_and_gradients():
  """A training step's sparse layers run the block-sparse kernel (interpreted here) or the jnp path."""
  tokens = jax.random.randint(jax.random.key(5), (2, 40), 0, 32)  # 40: ragged 16-token blocks
  calls = []

  def loss_and_grads(implementation):
    sparse = sink_window_attention(2, 9, implementation=implementation, block_size=16)
    whole = sparse.contiguous
    sparse.contiguous = lambda *a: calls.append(implementation) or whole(*a)  # a spy
    model = Transformer(vocab_size=32, dim=32, depth=3, num_heads=2, attention_fns=(sparse, causal_attention, sparse),
                        rngs=nnx.Rngs(0))
    return nnx.value_and_grad(lambda m: jnp.mean(m(tokens) ** 2))(model)

  ref, ref_g = loss_and_grads("dense")
  for impl in ("pallas", "jnp"):
    val, g = loss_and_grads(impl)
    np.testing.assert_allclose(val, ref, rtol=1e-5)
    for x, y in zip(jax.tree.leaves(g), jax.tree.leaves(ref_g)):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  assert calls == ["dense"] * 2 + ["pallas"] * 2 + ["jnp"] * 2  # two sparse layers each


def test_auto_on_cpu_gathers_blocks_only_on_long_sequences(monkeypatch):
  from jaxdyn.attention import _longgen  # noqa: PLC0415
  seen, real = [], _longgen.block_sparse_attention

  def spy(*args, implementation, **kwargs):
    seen.append(implementation)
    return real(*args, implementation=implementation, **kwargs)

  monkeypatch.setattr(_longgen, "block_sparse_attention", spy)
  for length, window, expected in ((1000, 60, []), (1024, 60, ["jnp"]), (1024, 600, [])):
    seen.clear()  # under 1,024 tokens, or a window covering most of them: the dense path
    x = jax.ShapeDtypeStruct((1, length, 1, 16), jnp.float32)
    assert jax.eval_shape(sink_window_attention(4, window).contiguous, x, x, x).shape == x.shape
    assert seen == expected, (length, window)


def test_auto_runs_the_kernel_only_where_pallas_compiles(monkeypatch):
  fn = sink_window_attention(2, 9)
  q = jnp.asarray(np.random.default_rng(0).standard_normal((1, 40, 2, 16)), jnp.float32)
  p = jnp.arange(40)
  np.testing.assert_allclose(fn.contiguous(q, q, q), fn(q, q, q, q_positions=p, k_positions=p), rtol=1e-6)
  from jaxdyn import _pallas  # noqa: PLC0415
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(_pallas, "target", lambda interpret: "gpu")
  text = jax.jit(fn.contiguous).trace(q, q, q).lower(lowering_platforms=("cuda",)).as_text()
  assert text.count("custom_call @__gpu$xla.gpu.triton(") == 1  # "auto" on a GPU: the kernel
  q8 = jax.ShapeDtypeStruct((1, 40, 2, 8), jnp.float32)  # head dim 8 < 16: Triton cannot; dense
  assert "triton" not in jax.jit(fn.contiguous).trace(q8, q8, q8).lower(lowering_platforms=("cuda",)).as_text()


def test_generation_with_the_ring_caches_equals_generation_with_full_caches():
  model, plan = _model()
  prompt_len = 11  # the prefill is longer than the rings (sink 2 + window 4), and the rings wrap
  prompt = jax.random.randint(jax.random.key(3), (2, prompt_len), 0, 32)
  new = 12
  lens, sinks = hybrid_cache_sizes(plan, prompt_len + new, sink=2, window=4)
  assert lens == (6, prompt_len + new, 6) and sinks == (2, 0, 2)
  pruned = generate(model, prompt, max_new_tokens=new, key=jax.random.key(0), greedy=True, cache_len=lens,
                    sink_tokens=sinks)
  full = generate(model, prompt, max_new_tokens=new, key=jax.random.key(0), greedy=True)
  np.testing.assert_array_equal(pruned, full)
  # and both equal the model's own full forward, token by token
  seq = np.asarray(full)
  logits = model(jnp.asarray(seq[:, :-1]))
  np.testing.assert_array_equal(np.argmax(logits[:, prompt_len - 1:], -1), seq[:, prompt_len:])


def test_the_pattern_matters_a_too_short_ring_for_a_full_layer_changes_the_tokens():
  # The check above can fail: giving the *full* layer a ring of 6 drops tokens it reads.
  model, plan = _model()
  prompt = jax.random.randint(jax.random.key(4), (4, 11), 0, 32)
  full = generate(model, prompt, max_new_tokens=8, key=jax.random.key(0), greedy=True)
  wrong = generate(model, prompt, max_new_tokens=8, key=jax.random.key(0), greedy=True, cache_len=6, sink_tokens=2)
  assert not np.array_equal(full, wrong)


def test_kv_cache_bytes_is_what_the_hybrid_cache_allocates_and_the_saving_grows_with_length():
  model, plan = _model(depth=3)
  for max_len in (5, 64):
    cache = hybrid_cache(model, plan, 2, max_len, sink=2, window=4)
    allocated = sum(x.nbytes for x in jax.tree.leaves(cache))
    acc = kv_cache_bytes(plan, max_len, num_heads=2, head_dim=8, sink=2, window=4, batch=2)
    assert acc["total"] == allocated
    assert acc["per_layer"] == [sum(x.nbytes for x in jax.tree.leaves(layer)) for layer in cache.layers]
  # 2/3 of the layers keep sink + window tokens: the saving tends to 2/3 as the sequence grows.
  six = layer_plan(6)
  savings = [kv_cache_bytes(six, n, num_heads=4, head_dim=16, sink=4, window=60)["saving"] for n in (64, 1024, 8192)]
  assert savings[0] == pytest.approx(0.0, abs=1e-3) and savings[0] < savings[1] < savings[2] < 2 / 3
  assert savings[1] == pytest.approx(2 / 3 * (1 - 64 / 1024), rel=1e-3)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="^depth: must be"):
    layer_plan(0)
  with pytest.raises(ValueError, match="^full_fraction: must be"):
    layer_plan(3, full_fraction=1.5)
  with pytest.raises(ValueError, match="^placement: must be"):
    layer_plan(3, placement="left")
  with pytest.raises(ValueError, match="^plan: must hold only"):
    hybrid_attention_fns(("full", "dense"), sink=1, window=2)
  with pytest.raises(ValueError, match="^plan: must be a non-empty"):
    kv_cache_bytes("full", 8, num_heads=1, head_dim=2, sink=0, window=1)
  with pytest.raises(ValueError, match="^window: must be"):
    sink_window_attention(1, 0)
  with pytest.raises(ValueError, match="^sink: must be"):
    hybrid_cache_sizes(("full",), 8, sink=-1, window=2)
  model, _ = _model()
  with pytest.raises(ValueError, match="^plan: must give one entry per layer"):
    hybrid_cache(model, ("full",), 1, 8, sink=1, window=2)
