"""LaCLIP (Fan et al., NeurIPS 2023) against CLIP at equal steps on rendered, captioned digits.

    .venv/bin/python -m experiments.repro --claim=laclip_zero_shot --output=/tmp/laclip_zero_shot.md
    make repro CLAIM=laclip_zero_shot

Not a training run of the harness: each arm is one `experiments.techniques.multimodal.clip.laclip_runner` call;
both arms of a seed share one run (the same data, initial model and image batches).

Setting. `jaxdyn.data.paired_digits`: scikit-learn's digits on a 24x24 canvas with drawn size, thickness and
position, captioned by a grammar (the class as a word or a numeral always; each attribute stated with probability
0.5; image-independent filler words); the train split's 1,437 images with their original captions (two narrow
templates, like alt-text) and 3 grammar rewrites each (all six templates, fresh synonyms and word orders, the same
facts). The paper rewrites with LLMs (ChatGPT / Bard / human examples in context, then LLaMA-7B, 4 rewrites per
caption); this uses the grammar, whose rewrites keep the facts exactly (`jaxdyn.data.load_rewrites` is the hook
for real rewrites). `jaxdyn.models.CLIP`: an MLP image tower (576 -> 64 -> 32), a 1-block width-32 causal text
Transformer pooled at EOS, 32-d joint space, temperature initialised to 0.07; 1,000 AdamW steps (2e-3, 100 warmup
steps then cosine decay, weight decay 0.1 on matrices, clipping at 1) at batch 128 (about 89 epochs); the logit
scale clamped to [0, log 100] after each step. CLIP pairs each image with its original caption; LaCLIP with one of
{original, 3 rewrites} drawn uniformly per image and step (`jaxdyn.multimodal.laclip_pipeline`). Both arms of a
seed start from the same initialisation and see the same image batches. Evaluation on the 360 held-out digits
rendered twice (720 images): zero-shot accuracy with CLIP's prompt ensembling over 4 templates x {word, numeral}
(`experiments.techniques.multimodal.clip.ZERO_SHOT_TEMPLATES`: two in the originals' templates, two in templates
only the rewrites use, so neither arm is favoured by the prompts; the accuracy with each half alone is reported
too), and retrieval recall@1 image->text / text->image against the eval images' original captions.

Sizing (probed on the CLIP arm alone, seed 0, before the claim was declared; no LaCLIP run was looked at):
a CNN image tower was too slow on these shared cores (58 ms of CPU per step against 10 ms for the MLP tower), so
the MLP tower. CLIP's curve with the MLP tower (eval every 100 steps): zero-shot accuracy 0.12 / 0.26 / 0.30 at
steps 100 / 200 / 300, then flat at 0.29-0.31 up to step 900, while the training loss falls from 4.4 to 0.08 (the
1,437 pairs are memorised); recall@1 about 0.03 (many eval captions state the same facts, so retrieval by caption
is ambiguous). 1,000 steps puts both arms well inside CLIP's plateau. One CLIP arm took about 100 s of training
and 1-2 minutes of start-up under the present load (4-5 claims sharing 2 cores).

Result (3 seeds, 2026-12-02, 9.9 minutes beside three other claims): holds. Held-out zero-shot accuracy 0.503 ±
0.020 for LaCLIP against 0.321 ± 0.051 for CLIP (per seed 0.483 / 0.524 / 0.503 against 0.307 / 0.279 / 0.378:
+18 points, every seed above the 2-point bar), more than the paper's +8.2. The gain is the same with the
original-style prompts alone (0.501 against 0.310) as with the rewrite-style ones (0.503 against 0.308), so it does
not come from the prompts resembling the rewrites. Retrieval recall@1 against the eval images' original captions
also rises (image->text 0.075 against 0.025, text->image 0.065 against 0.029), although CLIP trains on exactly
that caption style. What the runs show about why: CLIP memorises its 1,437 fixed captions (final training loss
0.020, its zero-shot accuracy flat from step 300 on), LaCLIP's training loss stays at 0.34 and its accuracy keeps
rising to step 500 - the text-overfitting account the paper gives. The gain is likely larger than the paper's
because the grammar's rewrites state exactly the caption's facts (an LLM's sometimes drop or invent some) and
because the data set is small enough to be memorised in 89 epochs. The "s" column is each arm's wall time; the
CLIP arm, run first, also compiles the step both arms share. While the claim ran, `jaxdyn.multimodal.clip_loss`'s
normalisation was changed for an exactly-zero embedding row (its gradient was NaN; found by a runner test with
blank images); it computes the same values and gradients for every non-zero row, which every row of these runs
is, so the results stand as run. After the run the runner's grain iterator was given a short prefetch (grain's
default computes up to 500 batches ahead on 16 threads): the same batches, less wall time.

Declared before any run:
- ``laclip_zero_shot``: LaCLIP's held-out zero-shot accuracy (mean of seeds 0, 1, 2) exceeds CLIP's by more than
  2 points (the paper: +8.2 points ImageNet zero-shot on CC12M).
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.multimodal.clip import laclip_runner

PAPER = ("Fan, Krishnan, Isola, Katabi, Tian, Improving CLIP Training with Language Rewrites, NeurIPS 2023, "
         "https://arxiv.org/abs/2305.20088")
RUNNER = laclip_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.clip = ml_collections.ConfigDict({
      "arm": "laclip", "share_runs": True,
      "canvas": 24, "train_copies": 1, "eval_copies": 2, "num_rewrites": 3, "keep_prob": 0.5, "data_seed": 0,
      "model": {"embed_dim": 32, "image_width": 16, "image_kind": "mlp", "text_width": 32, "text_depth": 1,
                "num_heads": 2, "temperature": 0.07},
      "steps": 1000, "batch_size": 128, "learning_rate": 2e-3, "warmup": 100, "weight_decay": 0.1,
      "eval_every": 100,
  })
  return c


CLIP_ARM = Arm("CLIP", {"clip.arm": "clip"})
LACLIP_ARM = Arm("LaCLIP", {"clip.arm": "laclip"})
SETTING = ("Rendered scikit-learn digits (24x24, drawn size / thickness / position) with grammar captions; 1,437 "
           "train pairs, 3 grammar rewrites per caption (the paper uses LLM rewrites); a small CLIP (MLP image "
           "tower, 1-block text Transformer, 32-d) trained 1,000 AdamW steps at batch 128 on original captions "
           "(CLIP) or on a caption drawn uniformly from {original, rewrites} per image and step (LaCLIP), same "
           "initialisation and image batches; zero-shot accuracy on 720 held-out images with 4 prompt templates "
           "(2 in the originals' style, 2 in the rewrites') x {word, numeral}.")
_REPORT = {"zero-shot (orig.-style prompts)": "zero_shot_original_style",
           "zero-shot (rewrite-style prompts)": "zero_shot_rewrite_style",
           "R@1 image->text": "recall1_image_to_text", "R@1 text->image": "recall1_text_to_image",
           "final train loss": "train_loss", "s": "seconds"}


def get_claims():
  return [
      Claim(name="laclip_zero_shot", paper=PAPER,
            statement="Training CLIP with language rewrites (LaCLIP) improves zero-shot classification: +8.2 "
            "points ImageNet zero-shot accuracy on CC12M at equal steps.",
            setting=SETTING + " Declared: LaCLIP's zero-shot accuracy more than 2 points above CLIP's.",
            get_config=get_config, arms=[CLIP_ARM, LACLIP_ARM], metric="zero_shot_accuracy",
            metric_name="held-out zero-shot accuracy", expects=[Expect("greater", "LaCLIP", "CLIP", margin=0.02)],
            runner=laclip_runner, report=_REPORT),
  ]


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.clip.update(share_runs=False, steps=3, batch_size=16, warmup=1, eval_every=2, eval_copies=1)
  c.clip.model.update(embed_dim=8, image_width=4, text_width=8)
  return c
