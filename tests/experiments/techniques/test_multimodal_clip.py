"""The LaCLIP claim runner's pieces: the zero-shot prompts, the clamped logit scale, and a smoke run of both arms."""

import math

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from configs import laclip_digits
from experiments.techniques.multimodal import clip as runner
from jaxdyn.data import CaptionVocab
from jaxdyn.data._paired import NUM_ORIGINAL_TEMPLATES, TEMPLATES, _fill


def test_zero_shot_templates_are_half_original_half_rewrite_style():
  # Each template is a grammar caption with filler "a photo of", noun "digit", no attribute and no tail.
  parts = {"filler": "a photo of", "noun": "digit", "cls": "{}"}
  filled = [_fill(t, parts) for t in TEMPLATES]
  assert filled[0] == "a photo of a digit {}" and filled[1] == "a photo of {} , a digit"
  assert filled[2] == "a photo of the digit {}" and filled[3] == "the digit {}"
  assert set(runner.ORIGINAL_STYLE_TEMPLATES) == set(filled[:NUM_ORIGINAL_TEMPLATES])
  assert set(runner.REWRITE_STYLE_TEMPLATES) <= set(filled[NUM_ORIGINAL_TEMPLATES:])
  assert len(runner.ORIGINAL_STYLE_TEMPLATES) == len(runner.REWRITE_STYLE_TEMPLATES)
  # Every prompt (word and numeral forms) is in the grammar's vocabulary.
  prompts = [t.format(n) for t in runner.ZERO_SHOT_TEMPLATES for pair in runner.CLASS_WORDS for n in pair]
  assert len(prompts) == 80
  CaptionVocab.build().encode(prompts, 12)


def test_train_step_clamps_the_logit_scale_to_0_log100():
  c = laclip_digits.smoke_config().clip
  model = runner.make_model(c, 90, 0)
  graphdef, params = nnx.split(model)
  opt = runner.make_optimizer(c)
  step = runner.make_train_step(graphdef, opt)
  images, tokens = jnp.zeros((4, 24, 24, 1)), jnp.array([[1, 5, 2]] * 4)
  for start, want in ((7.0, math.log(100.0)), (-3.0, 0.0)):
    m = nnx.merge(graphdef, params)
    m.log_scale[...] = jnp.float32(start)
    _, p = nnx.split(m)
    p, _, loss, scale = step(p, opt.init(p), images, tokens)
    assert abs(float(nnx.merge(graphdef, p).log_scale[...]) - want) < 1e-6
    assert abs(float(scale) - math.exp(want)) < 1e-4 and np.isfinite(float(loss))


def test_smoke_run_without_rewrites_laclip_is_clip(tmp_path):
  c = laclip_digits.smoke_config()
  c.clip.num_rewrites = 0
  res = runner.run_all(c)
  clip, laclip = res["per_arm"]["clip"], res["per_arm"]["laclip"]
  for key in ("zero_shot_accuracy", "train_loss", "recall1_mean", "zero_shot_original_style", "logit_scale"):
    assert clip[key] == laclip[key], key  # the same init, batches and (with no rewrites) texts
  assert 0.0 <= clip["zero_shot_accuracy"] <= 1.0 and laclip["zero_shot_minus_clip"] == 0.0
  assert [h["step"] for h in clip["history"]] == [2, 3]
  assert res["num_eval"] == 360 and res["num_train"] == 1437
  # One arm of the claim: its part of the shared run, and the seed-level entries.
  one = runner.run(ml_collections.ConfigDict({**c.to_dict(), "clip": {**c.clip.to_dict(), "arm": "clip"}}),
                   str(tmp_path / "clip"))
  assert one["arm"] == "clip" and one["max_len"] == res["max_len"] and one["train_loss"] == clip["train_loss"]
