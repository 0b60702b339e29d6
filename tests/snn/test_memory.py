"""Memory from XLA's compiled memory analysis: SLTT's temp bytes stay flat in T, BPTT's grow."""

import functools

import jax
import jax.numpy as jnp
import pytest

from jaxdyn.snn import lif_step, through_time_loss

B, D, H, C = 32, 64, 128, 10


def step_fn(p, state, carry, x, t):
  v1, v2 = (None, None) if carry is None else carry
  s1, v1 = lif_step(v1, x @ p["w1"])
  s2, v2 = lif_step(v2, s1 @ p["w2"])
  return s2 @ p["w3"], (v1, v2), state


@functools.lru_cache(maxsize=None)
def temp_bytes(mode: str, num_steps: int) -> int:
  p = {"w1": jnp.zeros((D, H)), "w2": jnp.zeros((H, H)), "w3": jnp.zeros((H, C))}
  x, y = jnp.zeros((B, D)), jnp.zeros((B,), jnp.int32)
  k = 2 if mode == "sltt_k" else None

  def loss(p, x, y, key):
    return through_time_loss(step_fn, p, None, x, y, num_steps=num_steps, mode=mode, k=k, key=key)[0]

  compiled = jax.jit(jax.grad(loss)).lower(p, x, y, jax.random.key(0)).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("mode", ["sltt", "sltt_k"])
def test_sltt_temp_memory_is_flat_in_t(mode):
  assert temp_bytes(mode, 32) <= 1.1 * temp_bytes(mode, 4)


def test_bptt_temp_memory_grows_with_t():
  assert temp_bytes("bptt", 32) >= 4 * temp_bytes("bptt", 4)
  assert temp_bytes("sltt", 32) < 0.3 * temp_bytes("bptt", 32)
