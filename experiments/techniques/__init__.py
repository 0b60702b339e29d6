"""Adapters: one module (or package) per library family, each registering the pieces it brings.

`experiments.registry.load_all` imports every module here (found with ``pkgutil``), so a new family
adds its adapter and nothing else changes. An adapter registers models, objectives, optimizers,
transforms, callbacks and model capabilities with `experiments.registry.register`; it never imports
the training loop (callbacks read what they need from `experiments.context.Context`).
"""
