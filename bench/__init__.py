"""Benchmarks and evaluations of the product, kept apart from it (the product never imports this package).

=================================  =============================================================================
``python -m bench``                speed on a clip: decode, detector, full pipeline, a peer package, scaling
                                   (:mod:`bench.speed`; ``python -m bench detectors`` runs :mod:`bench.detectors`)
``python -m bench.detectors``      detector comparison: speed, recall by face size, false positives
``python -m bench.runtime``        onnxruntime thread count and spinning on the full pipeline
``python -m bench.latency``        capture-to-output latency and reconnect times on a stamped RTSP camera
``python -m bench.streams``        many live 1080p25 cameras in one process: streams in real time, latency
``python -m bench.evaluate_video`` labelled generated videos: IDF1, MOTA, label accuracy, flicker
=================================  =============================================================================

:mod:`bench.synth` makes the synthetic scenes they share; :mod:`bench.stamped_rtsp_server` is the live
camera of the latency benchmark (also used by the tests' RTSP server). This file imports nothing: the
camera runs under the system Python, which has neither numpy nor the product's requirements.
"""
