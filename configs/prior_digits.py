"""PRIOR (Chen et al., 2025) against plain next-token prediction for a small image captioner on `paired_digits`.

    .venv/bin/python -m experiments.repro --claim=prior_image_tokens --output=/tmp/prior_image_tokens.md
    make repro CLAIM=prior_image_tokens           # also prior_caption_classification (the same runs)

Not a training run of the harness: each arm is one `experiments.techniques.multimodal.prior.prior_runner` call;
both arms of a seed share one run (one reference LM, the same initial parameters and batches). Data: the 1,437
scikit-learn training digits rendered 4 times each on a 24x24 canvas with drawn size, thickness and position
(`jaxdyn.data.paired_digits`, seeded by the run's seed), one grammar caption each (the class always, each
attribute with probability 0.5, image-independent filler); eval: the 360 held-out digits with their captions.
Model: `jaxdyn.models.Captioner` (CNN image tower of width 16 giving 4 prefix embeddings, a 2-block width-64
decoder with 2 heads), word-level tokens (87 ids, 18 per caption). The reference LM is the same model from the
same initial parameters called without images (caption-only), trained 200 steps by next-token prediction; then
each captioner arm trains 800 steps from those initial parameters (batch 64, Adam 3e-3, 50 warmup steps then
cosine to 10%, clip 1) with plain next-token cross-entropy ("NTP") or `jaxdyn.multimodal.prior_loss`
(alpha = 1, the reference's probabilities fixed) ("PRIOR"). Metrics on the eval images, teacher forced
(`experiments.techniques.multimodal.prior` module docstring): top-1 accuracy on image-related target tokens
(class words and numerals, size, thickness and position words), and caption-based classification (the class
whose word or numeral gets the most probability at the caption's class slot).

Sizing, before the claim was declared (seed 0; only the reference LM and the NTP captioner were run, never a
PRIOR arm): with 1 rendering per digit the reference LM's eval loss was lowest near 150-200 steps (1.33 at 150,
1.41 at 300) and the NTP captioner over-fitted its 1,437 captions (train loss 0.03, eval loss 1.20 -> 3.29 over
1,500 steps; image-token accuracy flat near 0.29, caption classification 0.31). With 4 renderings per digit the
reference LM reached eval loss 1.29 at 200 steps (image-token accuracy without images 0.13; mean PRIOR weight
1.70 on image-related train tokens, 0.72 on the others, which carry 72% of the tokens), and the NTP captioner's
eval curve was still rising at 600 steps without over-fitting (image-token accuracy 0.298 / 0.303 / 0.306 /
0.300 / 0.316 / 0.325 at steps 100..600, same-fact accuracy 0.51 -> 0.59, eval loss 1.19 -> 1.12) while its
caption classification stayed at chance (0.09): the attributes are learned first, the class not yet. The
present setting (4 renderings, 200 reference steps, 800 captioner steps) follows. The probe took about 300 s
for one seed on the loaded machine (0.34 s per captioner step with four other runs beside it).

Declared before any run of the compared arms:
- ``prior_image_tokens``: PRIOR's seed-mean top-1 accuracy on the eval captions' image-related tokens is above
  NTP's by more than 0.01 (1 point; NTP is near 0.33, so about +3% relative; the paper reports +19% relative
  on its benchmarks, averaged).
- ``prior_caption_classification``: PRIOR's seed-mean caption-based classification accuracy is above NTP's by
  more than 0.01 (the paper has no such metric; NTP's was at chance at 600 steps in the probe, so this asks
  whether PRIOR's weight on the class token gets the class learned sooner).

Result (3 seeds, 2026-12-02, 27 minutes on the loaded machine beside four other runs; per seed about 50-100 s
for the reference LM and 165-250 s per captioner arm): both hold on the seed mean, the second only by a spread
larger than the difference.
- ``prior_image_tokens`` holds: image-token accuracy 0.332 +- 0.010 (PRIOR) against 0.319 +- 0.001 (NTP),
  +1.3 points, +4.0% relative (the paper: +19%, on other metrics and at another scale). Per seed +1.0 / +2.3 /
  +0.45 points, so PRIOR is ahead on every seed but seed 2 alone misses the declared 1-point margin. The NLL of
  the image-related tokens falls on every seed (1.977 / 1.948 / 1.939 -> 1.921 / 1.747 / 1.894 nats), and the
  same-fact accuracy moves little (0.592 -> 0.604, per seed +0.3 / +4.6 / -1.4 points). The price is the
  down-weighted tokens: other-token accuracy 0.684 -> 0.506 and eval loss per token 1.12 -> 1.80 (the filler the
  reference LM already predicts gets weights near 0, "of" after "a photo", "the" after "in", so the captioner
  never learns them well, which is what PRIOR intends).
- ``prior_caption_classification`` holds on the mean, 0.197 +- 0.15 against 0.125 +- 0.04, but it is one seed's
  result: per seed 0.075 / 0.364 / 0.153 against 0.103 / 0.169 / 0.103 (PRIOR lower on seed 0). At 800 steps
  neither arm has learned the digit's class well (chance is 0.1); only seed 1's PRIOR arm has started to. Read it
  as "not shown either way" at this scale.
The per-token weights (``sample_weights`` in each arm's results, printed by the runner) put the weight where the
paper says: mean 1.70 on image-related train tokens against 0.72 on the others (the image-related 28% of the
tokens get 48% of the weight), e.g. ``a:0.97 scan:0.98 of:0.00 a:0.70 LARGE:1.34 THIN:1.39 numeral:1.11
SEVEN:1.40 <eos>:1.12``. They also show PRIOR's blind spot on this grammar: a word drawn at random independently
of the image (the noun "digit" / "numeral" / "number" / "figure", the first filler word) is as unpredictable to
the reference LM as an image word and gets as much weight.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.multimodal.prior import prior_runner

PAPER = ("Chen, Peng, Zhang, Ji, Prioritizing Image-Related Tokens Enhances Vision-Language Pre-Training, 2025, "
         "https://arxiv.org/abs/2505.08971")
RUNNER = prior_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.prior = ml_collections.ConfigDict({
      "arm": "prior", "share_runs": True, "copies": 4, "keep_prob": 0.5,
      "model": {"dim": 64, "depth": 2, "num_heads": 2, "prefix_len": 4, "image_width": 16, "image_kind": "cnn"},
      "ref_steps": 200, "steps": 800, "batch": 64, "learning_rate": 3e-3, "warmup": 50, "alpha": 1.0,
      "eval_every": 100, "num_sample_captions": 6,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.prior.update(share_runs=False, copies=1, ref_steps=3, steps=3, batch=8, eval_every=2, num_sample_captions=2)
  c.prior.model.update(dim=16, depth=1, num_heads=2, prefix_len=2, image_width=4)
  return c


NTP = Arm("NTP", {"prior.arm": "ntp"})
PRIOR = Arm("PRIOR", {"prior.arm": "prior"})
SETTING = ("paired_digits (1,437 scikit-learn digits x 4 renderings at 24x24 with drawn size, thickness and "
           "position; grammar captions: the class always, each attribute w.p. 0.5, image-independent filler); a "
           "Captioner (CNN tower, 4 prefix embeddings, 2-block width-64 decoder); reference LM = the same model "
           "without images, 200 steps of NTP; captioner arms 800 steps (batch 64, Adam 3e-3) from the same init "
           "with plain NTP or PRIOR's weighted loss (alpha 1); teacher-forced metrics on the 360 eval digits.")
_REPORT = {"image-token acc": "image_token_accuracy", "same-fact acc": "image_fact_accuracy",
           "other-token acc": "other_token_accuracy", "caption class acc": "caption_class_accuracy",
           "eval loss": "eval_loss", "ref eval loss": "reference_eval_loss",
           "weight image / other": lambda r: r["mean_weight_image"] / r["mean_weight_other"],
           "train s": "train_seconds"}


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, arms=[NTP, PRIOR], runner=prior_runner, report=_REPORT)
  return [
      Claim(name="prior_image_tokens",
            statement="Weighting caption tokens by 1 - p_ref of a caption-only reference LM (PRIOR) improves a "
            "vision-language model over plain next-token prediction (19% average relative improvement).",
            setting=SETTING + " Declared: PRIOR's image-token accuracy above NTP's by more than 0.01.",
            metric="image_token_accuracy", metric_name="image-token accuracy",
            expects=[Expect("greater", "PRIOR", "NTP", margin=0.01)], **common),
      Claim(name="prior_caption_classification",
            statement="PRIOR improves a vision-language model over plain next-token prediction (here: "
            "classifying an image by its caption's class word).",
            setting=SETTING + " Declared: PRIOR's caption-based classification accuracy above NTP's by more "
            "than 0.01.",
            metric="caption_class_accuracy", metric_name="caption-based classification accuracy",
            expects=[Expect("greater", "PRIOR", "NTP", margin=0.01)], **common),
  ]
