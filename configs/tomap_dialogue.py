"""ToMAP (Han et al., 2025): a persuader that reads a trained stance predictor against one that does not.

    .venv/bin/python -m experiments.repro --claim=tomap_predictor_changes_stance --output=/tmp/tomap.md
    make repro CLAIM=tomap_predictor_changes_stance

Not a training run of the harness: each arm is one `experiments.techniques.rl.tomap.tomap_runner` call; all four
arms of a seed share one run (one stance predictor, the same training opponents, the same evaluation opponents).
The game (`jaxdyn.rl.play_dialogue`): an opponent with a hidden stance on 4 counter-claims (uniform in [0, 1]),
3 turns; addressing a held claim (belief >= 0.5) halves the belief, addressing one that is not held backfires
(the belief moves half-way to 1); the opponent replies with each claim's attitude level (0 .. 4, belief noise
0.15) shown with probability 0.5, else "?". Stance predictor: a `jaxdyn.rl.StancePredictor` (one hidden layer of
64) trained with the authors' cross-entropy on the level, 500 full-batch Adam steps (3e-3) on 3,200 games of a
random persuader (800 more held out). Persuaders: an MLP policy (one hidden layer of 64) over the reply features
alone or with the predictor's logits appended, 500 REINFORCE steps of 128 fresh games each (actions sampled,
returns to go of the authors' normalised per-turn agreement change, advantages normalised over the step's games
at each turn, entropy bonus 0.01, Adam 3e-3); the same opponents, steps, optimizer and initialisation seed for
both. Evaluation: 4,000 fresh games, greedy persuaders, beside a random persuader and an oracle that sees the
hidden stance.

Why this game: knowing the stance is what the persuader needs. With backfire 0.5 a misdirected argument costs
about as much as a landed one gains, so a random persuader leaves the expected agreement unchanged (rise rate
0.51 on 4,000 games) while the oracle raises it in 94% of games (probed on the reference rows only, before
declaring); a backfire of 0.1 (the library's default) lets a random persuader win 81% of games, leaving little to
gain. The replies are noisy and half hidden, so the stance has to be inferred from the whole dialogue; that is
the predictor's job, as in the paper, and the persuader without it has to learn the same inference from the
scalar persuasion reward alone, at the same RL budget.

Sizing, before the claim ran: the predictor stage alone was probed (seed 0: held-out loss 1.16, level accuracy
0.46, held / not-held accuracy 0.68 against the true stance; 1,000 steps or lr 1e-2 were no better), and 10 to
80 RL steps of one arm were timed (under 10 ms a step after a compile of about 15 s under load), with no
look at their results. No result of the compared arms was seen before the claim was declared.

Result (3 seeds, 2026-12-02, 2.9 min while other claims shared the 2 cores; per seed 85 s, 39 s, 48 s): the
declared direction holds only by the letter. The persuader with the predictor raises the opponent's agreement in
84.3% of fresh games, the one without it in 84.3% (0.8432 against 0.8427, difference 0.0005 +- 0.0069 over seeds:
a tie), and its mean agreement change (0.1015 against 0.1021) and reward (0.251 against 0.253) are as close and
slightly lower; both sit between the random persuader (50.1%) and the oracle (93.8%). The training curves (rise
rate of the sampled training games every 25 steps) show no consistent head start either. Diagnosis, not acted on
here: in this game the predictor adds no information, since its input is the same reply features the persuader
without it reads (`jaxdyn.rl.persuader_observation` appends a function of them), and it was trained on 3,200
random-persuader games, while 500 x 128 = 64,000 RL games are enough for the plain MLP to learn the same
inference from the reward (both persuaders also miss the same information: neither observation holds the
persuader's own earlier choices, and half the replies are hidden, which is what separates them from the oracle).
A setting where the predictor carries something the persuader cannot learn at its RL budget (a much smaller
budget, or a predictor trained on richer data than the persuader sees, as the paper's text encoder is) is the
next thing to declare, as a new claim.

Declared before any run:
- ``tomap_predictor_changes_stance``: the persuader with the stance predictor raises the opponent's agreement
  with the thesis in a larger share of fresh games than the persuader without it (seed-mean rise rate,
  "greater", margin 0).
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.rl.tomap import tomap_runner

PAPER = ("Han, Liu, You, ToMAP: Training Opponent-Aware LLM Persuaders with Theory of Mind, 2025, "
         "https://arxiv.org/abs/2505.22961")
RUNNER = tomap_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.tomap = ml_collections.ConfigDict({
      "arm": "with_predictor", "share_runs": True,
      "num_claims": 4, "num_turns": 3, "rate": 0.5, "backfire": 0.5, "threshold": 0.5, "noise": 0.15,
      "reveal": 0.5, "global_factor": 0.0,
      "predictor_games": 4000, "predictor_holdout": 0.2, "predictor_hidden": 64, "predictor_steps": 500,
      "predictor_learning_rate": 3e-3,
      "policy_hidden": 64, "rl_steps": 500, "games_per_step": 128, "rl_learning_rate": 3e-3, "gamma": 1.0,
      "entropy_coef": 0.01, "eval_games": 4000, "log_every": 25,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.tomap.update(share_runs=False, num_turns=2, predictor_games=20, predictor_steps=3, predictor_hidden=8,
                 policy_hidden=8, rl_steps=3, games_per_step=8, eval_games=16, log_every=1)
  return c


WITH = Arm("with stance predictor", {"tomap.arm": "with_predictor"})
WITHOUT = Arm("without stance predictor", {"tomap.arm": "without_predictor"})
RANDOM = Arm("random persuader (reference)", {"tomap.arm": "random"})
ORACLE = Arm("oracle persuader (reference)", {"tomap.arm": "oracle"})
SETTING = ("Toy persuasion game: an opponent with a hidden stance on 4 counter-claims, 3 turns, a rebuttal of a held "
           "claim halves it and one of an unheld claim backfires (belief half-way to 1); replies show noisy attitude "
           "levels half the time. A StancePredictor MLP trained on 3,200 random-persuader games; two MLP persuaders "
           "trained by REINFORCE (500 steps x 128 games, per-turn advantages over the batch, Adam 3e-3) on the "
           "authors' normalised agreement-change reward, reading the replies alone or with the predictor's output; "
           "greedy evaluation on 4,000 fresh games. Reference rows: random persuader, oracle that sees the stance.")
_REPORT = {"mean agreement change": "mean_change", "mean reward": "mean_reward",
           "rise rate - without's": "rise_rate_minus_without", "predictor held acc.": "predictor_held_accuracy",
           "train s": "rl_seconds"}


def get_claims():
  return [
      Claim(name="tomap_predictor_changes_stance", paper=PAPER,
            statement="A persuader given a theory-of-mind stance predictor's view of the opponent's attitudes "
            "changes the opponent's stance more often than one without it.",
            setting=SETTING + " Declared: the with-predictor persuader's rise rate greater than the one's without.",
            get_config=get_config, arms=[WITH, WITHOUT, RANDOM, ORACLE], runner=tomap_runner,
            metric="rise_rate", metric_name="share of games with agreement raised",
            expects=[Expect("greater", "with stance predictor", "without stance predictor")], report=_REPORT),
  ]
