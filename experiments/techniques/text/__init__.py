"""Language-model data and objectives in the harness (`jaxdyn.text`), one module per technique.

- ``lm``: what every module here shares: the small byte-level `jaxdyn.models.Transformer`, its Adam
  training loop over dicts of ``inputs`` / ``targets`` / ``weights`` (optional ``segment_ids`` /
  ``positions``) and its weighted validation loss; ``Trainer`` / ``train_lockstep`` step several arms in
  turn so that the machine's load slows them alike.
- ``decomposition`` (`dd_runner`): dataset decomposition against concat-and-chunk, with and without the
  document mask; ``split_top_level`` makes the documents (top-level pieces of standard-library files).
- ``meco`` (`meco_runner`): MeCo on 85% and 100% of the steps against plain pre-training.
- ``self_generated`` (`self_generated_runner`): batch-scheduled sampling against teacher forcing,
  scored by free-running greedy continuations.
- ``repo_context`` (RepoFusion), ``masksearch`` (RAMP), ``adversarial_masking`` (Adversarial-MidiBERT)
  and ``nat`` (noise-aware training): one claim runner each.

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
