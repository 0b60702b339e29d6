r"""The policy-gradient core as a harness objective: ``"grpo"``, classification as a one-step verifiable task.

Any harness classifier becomes a policy over its classes: for each input ``x`` the objective samples
``group_size`` labels ``a_{1..G} ~ softmax(f(x))``, the verifier's reward is ``r_g = 1[a_g = y]`` (the label is
only read to score a sample, never as a target), GRPO's group-relative advantages are taken within each input's
group (`jaxdyn.rl.group_advantages`, ``scale="std"``), and the loss is `jaxdyn.rl.clipped_surrogate_loss` over the
``B * G`` one-token "completions" with the sampling policy's log-probs as the old ones (one update per sample, so
the ratio is 1 and the gradient is REINFORCE with the group-mean baseline, scaled by the group's std):

.. math::
  \nabla L = -\frac{1}{B G}\sum_{b, g} \frac{r_{b,g} - \bar r_b}{\operatorname{std}_g r_{b,g} + \epsilon}\,
  \nabla \log \pi(a_{b,g} \mid x_b).

No KL term: the harness keeps no frozen reference model (the language-model runners in this package do, with
`jaxdyn.rl.kl_k3`). A group whose samples are all right or all wrong has zero advantages and no gradient, as in
GRPO. Training accuracy in the harness's metrics comes from the same logits (dropout from ``key``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.registry import register
from jaxdyn import _validation, rl


@register("objective", "grpo", tiny={"group_size": 2})
def grpo(model, batch, *, key, group_size: int = 8, clip_eps: float = 0.2):
  """GRPO on sampled class labels with the 0/1 verifier reward (see the module)."""
  group_size = _validation.check_int("group_size", group_size, lower=1)
  key_drop, key_sample = jax.random.split(key)
  logits = model(batch["x"], train=True, key=key_drop)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  b = logits.shape[0]
  actions = jax.random.categorical(key_sample, jax.lax.stop_gradient(logp), shape=(group_size, b)).T  # (B, G)
  rewards = (actions == batch["y"][:, None]).astype(jnp.float32).reshape(-1)  # consecutive groups of G
  lp = jnp.take_along_axis(logp, actions, axis=-1).reshape(-1, 1)
  adv = rl.group_advantages(rewards, group_size)
  loss, aux = rl.clipped_surrogate_loss(lp, jax.lax.stop_gradient(lp), adv, jnp.ones_like(lp), clip_eps=clip_eps)
  return loss, {"logits": logits, "reward": jnp.mean(rewards), "clip_fraction": aux["clip_fraction"]}
