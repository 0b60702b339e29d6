"""Post-training of a small language model: a verifiable task, the policy-gradient core, HAPO, SCoRe, M-STaR,
ToMAP, DPO and value drift.

- `addition_problems`, `format_prompt`, `format_completion`, `parse_answer`, `verify`, `encode`,
  `decode_completion`: multi-digit addition written as bytes, with prompt ids, traces of varied verbosity
  (and deliberately wrong ones) and an exact verifier, on `jaxdyn.data`'s byte vocabulary.
- `completion_mask`, `policy_log_probs`, `group_advantages`, `kl_k3`, `clipped_surrogate_loss`: GRPO's
  group-relative advantages and the clipped surrogate with a k3 KL penalty to a reference policy.
- `HAPOHistory`, `hapo_init`, `hapo_length_reward`, `hapo_reward`, `hapo_update_history`: HAPO's
  history-aware cosine length reward (Huang et al., 2025) and its per-prompt history state.
- `dpo_loss`, `value_drift`, `DriftMetrics`: DPO (Rafailov et al., NeurIPS 2023) and metrics of how a
  model's choices on a probe set drift across checkpoints.
- `score_episode`, `score_turn2_prompt`, `score_rewards`, `score_stage1_loss`, `score_stage2_rewards`,
  `score_sft_corrections`, `score_sample`, `ScoreEpisode`: SCoRe's two-attempt self-correction episodes, stage I's loss,
  stage II's reward bonus and the SFT-on-corrections baseline (Kumar et al., 2024).
- `select_answers`, `reward_pass_at_k`, `choose_temperature`, `evolve_schedule`, `EvolveStep`, `majority_vote`,
  `RewardModel`, `reward_pairwise_loss`, `reward_pointwise_loss`, `selected_sft_loss`: M-STaR's self-evolving
  loop pieces (Liu et al., 2024): answer selection, online / iterative / continuous schedules, prompt variation,
  automatic temperature balancing by Reward-Pass@2, a small reward model and the loss on selected answers.
- `value_preferences`, `value_sft_data`, `value_probes`, `probe_value_probs`, `dpo_init`, `dpo_step`, `DPOState`,
  `ValuePreferences`, `ValueDemos`, `ValueProbes`: a synthetic preference dataset with a controlled value, a
  fixed probe set and its choice probabilities, and a jitted DPO step (after Bhatia et al., "Value Drifts", 2025).
- `opponent_update`, `opponent_reply`, `thesis_agreement`, `reply_features`, `StancePredictor`, `stance_loss`,
  `predicted_stance`, `persuader_observation`, `persuasion_reward`, `dialogue_rewards`, `play_dialogue`,
  `Dialogue`, `dialogue_stance_examples`, `NUM_LEVELS`: ToMAP's opponent-aware persuasion core (Han et al., 2025)
  on a toy dialogue game: a simulated opponent with a hidden stance, a stance predictor, the persuasion reward.

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
from jaxdyn.rl import _score, _self_evolving, _tomap, _value_data
from jaxdyn.rl._score import *  # noqa: F403  (SCoRe)
from jaxdyn.rl._self_evolving import *  # noqa: F403  (M-STaR)
from jaxdyn.rl._tomap import *  # noqa: F403  (ToMAP)
from jaxdyn.rl._value_data import *  # noqa: F403  (value drift data, DPO step)

__all__ = [
    "AdditionProblems", "addition_problems", "format_prompt", "format_completion", "parse_answer", "verify", "encode",
    "decode_completion", "completion_mask", "policy_log_probs", "group_advantages", "kl_k3", "clipped_surrogate_loss",
    "HAPOHistory", "hapo_init", "hapo_length_reward", "hapo_reward", "hapo_update_history", "dpo_loss",
    "DriftMetrics", "value_drift",
    *_score.__all__,
    *_self_evolving.__all__,
    *_value_data.__all__,
    *_tomap.__all__,
]
