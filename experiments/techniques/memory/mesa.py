"""Mesa in the harness: the ViT with 8-bit saved activations and the train-step memory it is judged by.

Nothing new has to be registered. The Mesa ViT is the ``vit`` model with ``mesa=True`` in
``config.model_kwargs`` (``mesa_groups``, ``mesa_official_compat`` and ``mesa_implementation`` pass
through to `jaxdyn.models.ViT` as well), so the float and Mesa arms of a claim differ in one key.
Its running quantization ranges are `jaxdyn.memory.MesaRange` variables, which the train step
carries with the model's non-parameter state (``state.rest``) and the forward pass updates; the
objective's ``key`` reaches the model, which derives the rounding key from it (``fold_in``), distinct
from the dropout key. The memory is reported by ``train_step_memory`` (``experiments/techniques/snn.py``):
XLA's memory analysis of the run's own compiled step, ``final_temp_bytes`` in results.json.

See ``configs/mesa_digits.py`` for the experiment and its claims, ``benchmarks/memory.py`` for the
side-by-side memory and time of the float, Mesa and rematerialised steps.
"""
