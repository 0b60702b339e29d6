"""Post-training of a small language model: a verifiable task, the policy-gradient core, HAPO, DPO, value drift.

- `addition_problems`, `format_prompt`, `format_completion`, `parse_answer`, `verify`, `encode`,
  `decode_completion`: multi-digit addition written as bytes, with prompt ids, traces of varied verbosity
  (and deliberately wrong ones) and an exact verifier, on `jaxdyn.data`'s byte vocabulary.
- `completion_mask`, `policy_log_probs`, `group_advantages`, `kl_k3`, `clipped_surrogate_loss`: GRPO's
  group-relative advantages and the clipped surrogate with a k3 KL penalty to a reference policy.
- `HAPOHistory`, `hapo_init`, `hapo_length_reward`, `hapo_reward`, `hapo_update_history`: HAPO's
  history-aware cosine length reward (Huang et al., 2025) and its per-prompt history state.
- `dpo_loss`, `value_drift`, `DriftMetrics`: DPO (Rafailov et al., NeurIPS 2023) and metrics of how a
  model's choices on a probe set drift across checkpoints.

Sampling uses `jaxdyn.models.generate` (KV cache, under ``jit``).
"""

from jaxdyn.rl._hapo import HAPOHistory, hapo_init, hapo_length_reward, hapo_reward, hapo_update_history
from jaxdyn.rl._policy_gradient import (
    clipped_surrogate_loss,
    completion_mask,
    group_advantages,
    kl_k3,
    policy_log_probs,
)
from jaxdyn.rl._preference import DriftMetrics, dpo_loss, value_drift
from jaxdyn.rl._task import (
    AdditionProblems,
    addition_problems,
    decode_completion,
    encode,
    format_completion,
    format_prompt,
    parse_answer,
    verify,
)

__all__ = [
    "AdditionProblems", "addition_problems", "format_prompt", "format_completion", "parse_answer", "verify", "encode",
    "decode_completion", "completion_mask", "policy_log_probs", "group_advantages", "kl_k3", "clipped_surrogate_loss",
    "HAPOHistory", "hapo_init", "hapo_length_reward", "hapo_reward", "hapo_update_history", "dpo_loss",
    "DriftMetrics", "value_drift",
]
