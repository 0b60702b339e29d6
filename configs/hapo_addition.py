"""HAPO (Huang et al., 2025) against correctness-only GRPO on 2-digit addition, from one SFT policy per seed.

    .venv/bin/python -m experiments.repro --claim=hapo_shorter_answers --output=/tmp/hapo.md
    make repro CLAIM=hapo_shorter_answers     # also hapo_keeps_accuracy, hapo_shorter_few_prompts,
                                              # hapo_keeps_accuracy_few_prompts

Not a training run of the harness: each arm is one `experiments.techniques.rl.hapo.hapo_runner` call; both arms of
a seed share one run (one SFT policy, the same prompt draws). A byte-level `jaxdyn.models.Transformer` (width 64,
2 layers, 4 heads, MLP ratio 4) is fine-tuned for 1,200 Adam steps (1e-3) of 64 fresh problems on completions written
answer-only / as column sums / as columns with carries with probabilities 0.2 / 0.3 / 0.5, 10% of them with a
wrong answer. Then 100 GRPO steps (16 prompts of a fixed set of 512 x 8 samples at temperature 1, at most 32 new
bytes, one on-policy step each, Adam 1e-4, k3 KL 0.02 to the SFT policy, group advantages normalised by the std)
with the correctness reward (1 / 0) or HAPO's (correctness + the history-aware cosine length reward, weight 1).
Evaluation: greedy decoding of 256 held-out problems.

Sizing, before the claim ran: a first setting (3 digits, 600 SFT steps at 3e-3) gave an SFT policy with greedy
accuracy 0 (its traces well formed, its digits wrong), so RL had no signal; it was stopped after one seed, and a
probe of the SFT stage alone (2 digits, 1,200 steps at 1e-3: greedy accuracy 0.95, mean length 21 bytes) set
the present one. No RL result of the present setting was looked at before it was declared.

Result (3 seeds, 2026-12-02, 8.4 minutes alone): HAPO does not shorten the answers: greedy length 22.8 against
23.1 bytes (0.99x; the most verbose format, longer than the SFT policy's 21.1), accuracy 0.975 against 0.984
(so ``hapo_keeps_accuracy`` holds, trivially). Diagnosis, not acted on here:
with 512 training prompts and 16 drawn per step, a prompt is revisited about 3 times in 100 steps, so HAPO's
history (set by a prompt's first correct answer) is rarely there when its prompt comes back, the length reward
is mostly 0, and HAPO's reward is the correctness reward; at temperature 1 the verbose traces are also the
accurate ones (the SFT policy's sampled accuracy is about 0.5). A setting with far fewer prompts (each seen tens
of times, as in the paper's several epochs) is the next thing to declare, as a new claim.

Second setting, declared after the first result and before any run of it: the same with a training set of 32
prompts instead of 512 (16 drawn per step, so each prompt comes back about 50 times in 100 steps and its history
is set from its second visit on), the only change, as the diagnosis above suggests. Same thresholds:
- ``hapo_shorter_few_prompts``: HAPO's mean answer length at most 0.8 of correctness-only RL's;
- ``hapo_keeps_accuracy_few_prompts``: HAPO's accuracy at most 5 points below correctness-only RL's.

Result of the second setting (3 seeds, 2026-12-02, about 25 minutes beside other claims):
``hapo_shorter_few_prompts`` holds on the mean and ``hapo_keeps_accuracy_few_prompts`` does not. HAPO's greedy
answers are 0.72x as long as correctness-only RL's (16.6 against 23.0 bytes), but one seed carries it: per seed
0.38 / 0.94 / 0.85, so two of three seeds alone miss the 0.8 bar. Accuracy falls from 0.857 to 0.675 (per seed
0.965 / 0.898 / 0.707 against 0.488 / 0.895 / 0.641), far more than the paper's 2-5 points; the seed that shortens
most (seed 0, answer-only format) loses the most (48 points). With 32 prompts the correctness-only arm also loses
accuracy against the SFT policy (0.943 -> 0.857): 100 steps on 32 prompts overfit them. The shortening here is the
policy switching to the answer-only format, whose accuracy the SFT stage left low (its traces help this small
model add), which is why length and accuracy move together rather than independently as in the paper.

Declared before any run (first setting):
- ``hapo_shorter_answers``: HAPO's mean answer length at most 0.8 of correctness-only RL's (the paper: 33-59%
  shorter);
- ``hapo_keeps_accuracy``: HAPO's accuracy at most 5 points below correctness-only RL's (the paper: 2-5 points).
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.rl.hapo import hapo_runner

PAPER = ("Huang, Zhang, Cardie, HAPO: Training Language Models to Reason Concisely via History-Aware Policy "
         "Optimization, 2025, https://arxiv.org/abs/2505.11225")
RUNNER = hapo_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.rl = ml_collections.ConfigDict({
      "arm": "hapo", "share_runs": True, "digits": 2, "length": 40,
      "model": {"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4},
      "sft_steps": 1200, "sft_batch": 64, "sft_learning_rate": 1e-3, "verbosity_probs": (0.2, 0.3, 0.5),
      "error_rate": 0.1,
      "rl_steps": 100, "num_prompts": 512, "prompts_per_step": 16, "group_size": 8, "max_new_tokens": 32,
      "rl_learning_rate": 1e-4, "kl_coef": 0.02, "length_weight": 1.0, "eval_problems": 256,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.rl.update(share_runs=False, sft_steps=3, sft_batch=8, rl_steps=2, num_prompts=8, prompts_per_step=2,
              group_size=2, max_new_tokens=8, eval_problems=4)
  c.rl.model.update(dim=16, depth=1, num_heads=2, mlp_ratio=2)
  return c


CORRECTNESS = Arm("correctness reward", {"rl.arm": "correctness"})
HAPO = Arm("HAPO reward", {"rl.arm": "hapo"})
FEW_PROMPTS = 32
CORRECTNESS_FEW = Arm("correctness reward", {"rl.arm": "correctness", "rl.num_prompts": FEW_PROMPTS})
HAPO_FEW = Arm("HAPO reward", {"rl.arm": "hapo", "rl.num_prompts": FEW_PROMPTS})
SETTING = ("2-digit addition written as bytes; a 2-layer width-64 byte-level Transformer fine-tuned on completions "
           "of three verbosities (answer only 20%, column sums 30%, columns with carries 50%; 10% wrong answers), "
           "then 100 GRPO steps (16 prompts of a fixed set of 512 x 8 samples, temperature 1, one on-policy step "
           "each, Adam 1e-4, k3 KL 0.02 to the SFT policy) with the correctness reward or HAPO's history-aware "
           "length reward added; greedy evaluation on 256 held-out problems.")
_REPORT = {"accuracy": "accuracy", "mean length": "mean_length", "length / SFT's": "length_ratio_to_sft",
           "SFT accuracy": "sft_accuracy", "SFT length": "sft_mean_length", "RL s": "rl_seconds"}


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, arms=[CORRECTNESS, HAPO], runner=hapo_runner, report=_REPORT)
  few = {**common, "arms": [CORRECTNESS_FEW, HAPO_FEW]}
  setting_few = SETTING.replace("a fixed set of 512", f"a fixed set of {FEW_PROMPTS}")
  return [
      Claim(name="hapo_shorter_answers",
            statement="History-aware length rewards make a reasoning model's answers 33-59% shorter than "
            "correctness-only RL.",
            setting=SETTING + " Declared: HAPO's mean length at most 0.8 of correctness-only RL's.",
            metric="length_ratio_to_correctness", metric_name="mean length / correctness-only RL's",
            expects=[Expect("below", "HAPO reward", value=0.8)], **common),
      Claim(name="hapo_keeps_accuracy",
            statement="HAPO shortens answers at a small accuracy cost (2-5 points).",
            setting=SETTING + " Declared: HAPO's accuracy at most 5 points below correctness-only RL's.",
            metric="accuracy", metric_name="greedy accuracy",
            expects=[Expect("at_least", "HAPO reward", "correctness reward", margin=0.05)], **common),
      Claim(name="hapo_shorter_few_prompts",
            statement="History-aware length rewards make a reasoning model's answers 33-59% shorter than "
            "correctness-only RL.",
            setting=setting_few + " Each prompt comes back about 50 times, so its history is set. Declared: HAPO's "
            "mean length at most 0.8 of correctness-only RL's.",
            metric="length_ratio_to_correctness", metric_name="mean length / correctness-only RL's",
            expects=[Expect("below", "HAPO reward", value=0.8)], **few),
      Claim(name="hapo_keeps_accuracy_few_prompts",
            statement="HAPO shortens answers at a small accuracy cost (2-5 points).",
            setting=setting_few + " Each prompt comes back about 50 times, so its history is set. Declared: HAPO's "
            "accuracy at most 5 points below correctness-only RL's.",
            metric="accuracy", metric_name="greedy accuracy",
            expects=[Expect("at_least", "HAPO reward", "correctness reward", margin=0.05)], **few),
  ]
