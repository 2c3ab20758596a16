"""Conversions of published models to ONNX, one module per conversion, each with a parity check.

Run them as ``python -m export.<module>``; they write into the model cache (``models.cache.cache_dir()``)
and record the file's sha256 in a manifest there (``models.registry.write_manifest``).
"""
