"""ERW's encoder: `configs/vit_digits_encoder.py` trained 3 steps by the harness, restored by path."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.techniques.diffusion import erw
from jaxdyn.data import load_dataset


@pytest.mark.slow  # a harness run and a second harness build: about 30 s alone, 100 s on shared cores
def test_load_encoder_restores_the_harness_checkpoint(tmp_path):
  res = erw.train_encoder(tmp_path / "enc", seed=0, steps=3, depth=1)
  assert res["steps"] == 3
  encode = erw.load_encoder(tmp_path / "enc")
  x = jnp.asarray(load_dataset("digits").eval.x[:5], jnp.float32)
  tokens = np.asarray(encode(x))
  assert tokens.shape == (5, 16, 64)
  # the restored parameters are the trained ones: the loader's class token is ViT.features, and the
  # restored model reproduces the run's final eval accuracy
  model, _ = erw.load_model(tmp_path / "enc")
  np.testing.assert_allclose(model.tokens(x)[:, 0], model.features(x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(model.tokens(x)[:, 1:], tokens, rtol=1e-5, atol=1e-5)  # jit vs eager
  d = load_dataset("digits").eval
  acc = float(np.mean(np.argmax(np.asarray(model(jnp.asarray(d.x, jnp.float32))), -1) == np.asarray(d.y)))
  np.testing.assert_allclose(acc, res["eval_accuracy"], atol=1e-6)
  with pytest.raises(FileNotFoundError, match="no config.json"):
    erw.load_encoder(tmp_path / "missing")
