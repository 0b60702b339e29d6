"""The small image-text models: the Transformer's prefix, the text tower's pooling, CLIP's towers, the captioner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import models

IMG = (12, 12, 1)
V = 20


def _images(n, seed=0):
  return np.asarray(jax.random.uniform(jax.random.key(seed), (n, *IMG)))


def test_prefix_equals_prepended_token_embeddings():
  lm = models.Transformer(V, dim=16, depth=2, num_heads=2, rngs=nnx.Rngs(1))
  tokens = jnp.array([[3, 4, 5, 6, 7], [8, 9, 10, 11, 12]])
  full = lm(tokens)
  prefix = lm.embed[...][tokens[:, :2]]
  np.testing.assert_allclose(lm(tokens[:, 2:], prefix=prefix), full[:, 2:], atol=1e-6)
  with pytest.raises(ValueError, match="prefix: cannot be combined"):
    lm(tokens, prefix=prefix, positions=jnp.arange(5))


def test_text_encoder_pools_at_the_first_eos():
  enc = models.TextEncoder(V, 8, width=16, depth=1, rngs=nnx.Rngs(0))
  a = jnp.array([[1, 5, 6, 2, 0, 0], [1, 7, 2, 9, 9, 9]])
  b = a.at[0, 4:].set(13).at[1, 3:].set(4)  # change only what follows each row's first <eos>
  np.testing.assert_allclose(enc(a), enc(b), atol=1e-6)
  c = a.at[0, 2].set(7)  # a token before <eos> changes the pooled features
  assert np.abs(np.asarray(enc(c)[0] - enc(a)[0])).max() > 1e-4
  h = enc.transformer.features(a)
  np.testing.assert_allclose(enc(a), enc.out(jnp.stack([h[0, 3], h[1, 2]])), atol=1e-6)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_clip_gives_unit_embeddings_and_its_initial_scale(kind):
  m = models.CLIP(IMG, V, embed_dim=8, image_width=4, image_kind=kind, text_width=16, text_depth=1,
                  temperature=0.05, rngs=nnx.Rngs(0))
  u, v, log_scale = m(_images(3), jnp.array([[1, 5, 2], [1, 6, 2], [1, 7, 2]]))
  np.testing.assert_allclose(jnp.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
  assert float(log_scale) == pytest.approx(np.log(20.0))
  assert u.shape == v.shape == (3, 8)


def test_captioner_is_causal_conditioned_on_the_image_and_runs_without_one():
  m = models.Captioner(IMG, V, dim=16, depth=1, prefix_len=3, image_width=4, rngs=nnx.Rngs(0))
  tokens = jnp.array([[1, 5, 6, 7, 2]])
  x = _images(1)
  logits = m(x, tokens)
  assert logits.shape == (1, 5, V)
  later = tokens.at[0, 3:].set(9)
  np.testing.assert_allclose(m(x, later)[:, :3], logits[:, :3], atol=1e-6)
  assert np.abs(np.asarray(m(_images(1, seed=5), tokens) - logits)).max() > 1e-4
  np.testing.assert_allclose(m(None, tokens), m.decoder(tokens), atol=1e-6)
  assert m.prefix(x).shape == (1, 3, 16)
