"""``python -m stream``: face analytics on a webcam, RTSP/HTTP stream, video file, image or folder.

Exit codes: 0 success, 2 bad input or usage (one-line error), 130 interrupted by
Ctrl-C, 143 terminated by SIGTERM. Outputs written so far are always finalized.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any, NoReturn

from stream.config import PROFILES, ConfigError, load_cli_config
from stream.signals import StopSignals, Terminated

logger = logging.getLogger("stream")

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 2, 130, 143


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line ``error: ...`` (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m stream",
        description="Detect, track and label every face with a smoothed age group, age and gender.",
        epilog="Exit codes: 0 ok, 2 bad input, 130 Ctrl-C, 143 SIGTERM. Models: `python -m models list`.",
    )
    parser.add_argument("--source", required=True,
                        help="webcam index (0), rtsp:// or http(s):// URL, video file, image file or folder of images")
    parser.add_argument("--output", help="annotated output: .mp4 for video, rtsp://host:port/path to push, "
                        "an image path or a folder for image sources")
    parser.add_argument("--events", help="JSONL file: one JSON object per processed frame")
    parser.add_argument("--summary", help="JSON file with per-track summaries and totals, written at the end")
    parser.add_argument("--show", action="store_true", help="show a live window (needs a display; q/Esc quits)")
    parser.add_argument("--config", help="config YAML (default: the repo's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key, e.g. --set detector.score_threshold=0.4 (repeatable)")
    parser.add_argument("--detector", help="detector model name (see `python -m models list`), or auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="onnxruntime device")
    parser.add_argument("--profile", choices=PROFILES,
                        help="models.profile: commercial (default; refuses non-commercial models), accurate "
                        "(utk_multihead, non-commercial licence) or research (any model)")
    parser.add_argument("--max-frames", type=int, help="stop after N frames")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.max_frames is not None and args.max_frames < 1:
        return _fail(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.log_level != "DEBUG":
        # OpenCV's native WARN/ERROR lines (e.g. probing every camera backend for a missing webcam) repeat
        # what our one-line error says; set before OpenCV is imported. OPENCV_LOG_LEVEL in the environment wins.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    try:
        config = load_cli_config(args.config, args.overrides, detector=args.detector, device=args.device,
                                 profile=args.profile)
    except ConfigError as error:
        return _fail(str(error))
    from stream.profiles import ProfileError, apply_profile, check_profile

    config = apply_profile(config, args.overrides)

    # Heavy imports only after the arguments are known to be good: --help and config errors stay instant.
    from models.fetch import ModelError
    from stream.detectors import detector_names
    from stream.runtime import RuntimeUnavailable
    from stream.sinks import SinkError
    from stream.sources import SourceError

    if config.detector.name not in detector_names():
        return _fail(f"unknown detector {config.detector.name!r}; valid detectors: {', '.join(detector_names())}")
    from stream.classify import check_classifier_models

    try:
        check_classifier_models(config.classifier)
    except ValueError as error:
        return _fail(f"classifier: {error}")
    try:
        check_profile(config)
    except ProfileError as error:
        return _fail(str(error))
    logger.info("profile %s: detector %s, classifiers %s", config.models.profile, config.detector.name,
                " + ".join(n for n in (config.classifier.age_model, config.classifier.gender_model) if n != "none"))
    stop = StopSignals()
    previous = stop.install()
    try:
        code = _run(args, config, stop)
    except (SourceError, SinkError, ModelError, RuntimeUnavailable, ConfigError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        logger.warning("interrupted (Ctrl-C); outputs finalized")
        return EXIT_INTERRUPTED
    except Terminated:
        logger.warning("terminated (SIGTERM); outputs finalized")
        return EXIT_TERMINATED
    finally:
        stop.restore(previous)
    if stop.signum == signal.SIGTERM:
        logger.warning("terminated (SIGTERM) after the frame in flight; outputs finalized")
        return EXIT_TERMINATED
    if stop.signum is not None:
        logger.warning("interrupted (Ctrl-C) after the frame in flight; outputs finalized")
        return EXIT_INTERRUPTED
    return code


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_BAD_INPUT


def _run(args: argparse.Namespace, config: Any, stop: StopSignals) -> int:
    from contextlib import ExitStack

    from stream.pipeline import Pipeline, describe_models, run
    from stream.sinks import any_quit_requested, open_sinks
    from stream.sources import local_source_path, open_source

    with ExitStack() as stack:
        # Outputs are opened before the models load so that an unwritable path fails fast.
        source = stack.enter_context(open_source(args.source, options=config.source))
        still = source.kind in ("image", "folder")
        logger.info("source %s (%s%s)", source.name, source.kind,
                    f", {source.fps:g} fps" if source.fps else "")
        sinks = open_sinks(args.output, args.events, args.show, source_kind=source.kind, fps=source.fps,
                           options=config.output, source_path=local_source_path(args.source),
                           summary=args.summary, source_name=source.name)
        for sink in sinks:
            stack.enter_context(sink)
        pipeline = Pipeline(config)
        pipeline.set_frame_rate(source.fps)
        for line in describe_models(pipeline):
            logger.info("%s", line)
            if "NON-COMMERCIAL" in line:
                logger.warning("a non-commercial model is active: not licensed for commercial use")
        stop.graceful = True
        try:
            result = run(pipeline, source, sinks, still_images=still, max_frames=args.max_frames,
                         should_stop=lambda: stop.signum is not None or any_quit_requested(sinks))
        finally:
            stop.disarm()
        logger.info("%d frames in %.1f s (%.1f fps); ms/frame %s", result.frames, result.seconds, result.fps,
                    {k: v for k, v in result.stage_ms.items() if v})
        logger.info("totals: %s", json.dumps(result.totals))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
