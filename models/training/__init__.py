"""Training and evaluation of the project's own models: nets, data, recipes, metrics.

Beside the runtime catalogue (``models.registry``, ``models.fetch``), never imported by it nor by ``stream/``:
the product runs the exported ONNX files only. Commands: ``python -m models.training.train`` (re-trains
``utk_multihead`` and writes its card) and ``python -m models.training.evaluate`` (scores any registered
classifier on a UTKFace-named folder through the product's own path).
"""
