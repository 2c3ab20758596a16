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

from stream.config import MAX_IMAGE_PIXELS, PROFILES, ConfigError, load_cli_config
from stream.redact import SecretFilter
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
    parser.add_argument("--source", dest="sources", action="append", default=[], metavar="[NAME=]SOURCE",
                        help="webcam index (0), rtsp:// or http(s):// URL, video file, image file, folder of images, "
                        "or demo (the default: a built-in 12 s clip made from a public-domain photo); repeat for "
                        "several cameras in one process (each named NAME, else after its source), or list them "
                        "under sources: in the config")
    parser.add_argument("--output", help="annotated output: .mp4 for video, rtsp://host:port/path to push, "
                        "an image path or a folder for image sources")
    parser.add_argument("--events", help="JSONL file: one JSON object per processed frame (of every camera); or "
                        "mqtt[s]://[user:password@]host[:port]/prefix to publish live events (see README)")
    parser.add_argument("--summary", help="JSON file with per-track summaries and totals (over all cameras and per "
                        "camera), written at the end")
    parser.add_argument("--counts", metavar="PATH.csv|.parquet",
                        help="people per time window (output.counts_window_s) by camera, age group and gender, "
                        "with dwell times: a table pandas reads, rewritten every window and at the end")
    parser.add_argument("--show", action="store_true", help="show a live window (needs a display; q/Esc quits)")
    parser.add_argument("--serve", metavar="HOST:PORT",
                        help="also serve the web page (live view, dashboard, uploads) while the run lasts")
    parser.add_argument("--config", help="config YAML (default: the repo's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key, e.g. --set detector.score_threshold=0.4, or one camera's: "
                        "--set door:tracker.lost_track_buffer=60 (repeatable)")
    parser.add_argument("--detector", help="detector model name (see `python -m models list`), or auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="onnxruntime device")
    parser.add_argument("--profile", choices=PROFILES,
                        help="models.profile: commercial (default; refuses non-commercial models), accurate "
                        "(utk_multihead, non-commercial licence) or research (any model)")
    parser.add_argument("--max-frames", type=int, help="stop after N frames (of each camera)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    # Before anything can print: no log line or error shows a password given on the command line.
    for url in (*args.sources, args.output, args.events):
        if url:
            SecretFilter.add_url(url)
    SecretFilter.install()
    if args.max_frames is not None and args.max_frames < 1:
        return _fail(f"--max-frames must be >= 1, got {args.max_frames}")
    # Before OpenCV is imported (it reads this once): no image may decode to more than this (decompression bombs).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    if args.log_level != "DEBUG":
        # OpenCV's native WARN/ERROR lines (e.g. probing every camera backend for a missing webcam) repeat
        # what our one-line error says; set before OpenCV is imported. OPENCV_LOG_LEVEL in the environment wins.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    try:
        config = load_cli_config(args.config, args.overrides, detector=args.detector, device=args.device,
                                 profile=args.profile, sources=args.sources)
        if not config.sources:  # neither --source nor a sources: list: the built-in demo clip
            config = load_cli_config(args.config, args.overrides, detector=args.detector, device=args.device,
                                     profile=args.profile, sources=["demo"])
    except ConfigError as error:
        return _fail(str(error))
    many = len(config.sources) > 1 or any((c.output, c.events, c.summary, c.counts) != (None,) * 4
                                          for c in config.sources)
    if many and args.output:
        return _fail("--output takes one camera's video; with several cameras give each its own under "
                     "sources: [{name, url, outputs: {output: ...}}] in the config")
    if many and args.show:
        return _fail("--show shows one camera; with several cameras give each an output (sources[].outputs.output)")
    if args.serve is not None:
        from stream.serve import parse_address

        try:
            parse_address(args.serve)
        except ValueError as error:
            return _fail(str(error))
    from stream.profiles import ProfileError, apply_profile, check_profile

    config = apply_profile(config, args.overrides)

    # Heavy imports only after the arguments are known to be good: --help and config errors stay instant.
    from models.fetch import ModelError
    from stream.runtime import RuntimeUnavailable
    from stream.sinks import SinkError
    from stream.sources import SourceError, source_kind

    for camera in config.sources:
        try:
            source_kind(camera.url)  # what it is, without opening it: a bad scheme or a missing path fails now
        except (SourceError, TypeError, ValueError) as error:
            return _fail(f"camera {camera.name}: {error}" if many else str(error))
    from stream.pipeline import check_model_names

    try:
        check_model_names(config)
    except ValueError as error:
        return _fail(str(error))
    try:
        check_profile(config)
    except ProfileError as error:
        return _fail(str(error))
    logger.info("profile %s: detector %s, classifiers %s", config.models.profile, config.detector.name,
                " + ".join(n for n in (config.classifier.age_model, config.classifier.gender_model) if n != "none"))
    stop = StopSignals()
    previous = stop.install()
    try:
        code = _run_cameras(args, config, stop) if many else _run(args, config, stop)
    except (SourceError, SinkError, ModelError, RuntimeUnavailable, ConfigError) as error:
        if stop.received is not None:  # a read or open cut short by Ctrl-C/SIGTERM: that is the outcome
            logger.warning("stopped by a signal (%s)", error)
            return EXIT_TERMINATED if stop.received == signal.SIGTERM else EXIT_INTERRUPTED
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
    # One line, whatever the message holds (a backend's text may carry newlines), and no secret in it.
    sys.stderr.write(f"error: {' '.join(SecretFilter.scrub_text(message).split())}\n")
    return EXIT_BAD_INPUT


def _inputs(args: argparse.Namespace, config: Any) -> list[Any]:
    """The files this run reads besides its sources (the config file, the model files): no output may name one."""
    from models.cache import cache_dir
    from models.fetch import local_dirs
    from stream.config import DEFAULT_CONFIG
    from stream.sinks import run_inputs

    config_file = args.config if args.config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    return run_inputs(config_file, [cache_dir(), *local_dirs(config.models.local_dirs)])


def _log_models(pipeline: Any) -> None:
    from stream.pipeline import describe_models

    for line in describe_models(pipeline):
        logger.info("%s", line)
        if "NON-COMMERCIAL" in line:
            logger.warning("a non-commercial model is active: not licensed for commercial use")


def _run(args: argparse.Namespace, config: Any, stop: StopSignals) -> int:
    from contextlib import ExitStack

    from stream.pipeline import Pipeline, run
    from stream.sinks import any_quit_requested, open_sinks
    from stream.sources import local_source_path, open_source

    camera = config.sources[0]
    config = camera.config(config)
    with ExitStack() as stack:
        # Outputs are opened before the models load so that an unwritable path fails fast.
        source = stack.enter_context(open_source(camera.url, options=config.source))
        still = source.kind in ("image", "folder")
        logger.info("source %s (%s%s)", source.name, source.kind,
                    f", {source.fps:g} fps" if source.fps else "")
        sinks = open_sinks(args.output, args.events, args.show, source_kind=source.kind, fps=source.fps,
                           options=config.output, source_path=local_source_path(camera.url),
                           summary=args.summary, source_name=source.name, camera=camera.name,
                           counts=args.counts, inputs=_inputs(args, config))
        for sink in sinks:
            stack.enter_context(sink)
        web = None
        if args.serve is not None:
            from stream.serve.server import serve_beside  # the web page: one more sink beside the others
            from stream.sinks import SinkError

            try:
                web = stack.enter_context(serve_beside(args.serve, config, source))
            except OSError as error:
                raise SinkError(f"cannot serve the web page on {args.serve}: {error.strerror or error}") from None
            sinks.append(web)
        pipeline = Pipeline(config, camera=camera.name)
        pipeline.set_frame_rate(source.fps)
        _log_models(pipeline)
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


def _run_cameras(args: argparse.Namespace, config: Any, stop: StopSignals) -> int:
    """Several cameras (or one with its own outputs) in one process: :mod:`stream.cameras`."""
    from contextlib import ExitStack
    from functools import partial
    from pathlib import Path

    from stream.cameras import Camera, run_cameras
    from stream.classify import build_classifiers
    from stream.detectors import build_detector
    from stream.pipeline import Pipeline
    from stream.sinks import SinkError, check_distinct_outputs, open_sinks
    from stream.sinks.mqtt import is_mqtt_url, parse_mqtt_url
    from stream.sources import local_source_path, open_source, source_kind

    # Every path is checked before anything opens: no output may name an input or another output.
    kinds = {camera.name: source_kind(camera.url) for camera in config.sources}
    outputs = [(f"--{flag}", target) for flag, target in (("events", args.events), ("summary", args.summary),
                                                           ("counts", args.counts))
               if target and target != "-" and "://" not in target]
    for camera in config.sources:
        outputs += [(f"{camera.name}: {flag}", target) for flag in ("output", "events", "summary", "counts")
                    if (target := getattr(camera, flag)) and target != "-" and "://" not in target]
    inputs = _inputs(args, config)
    for camera in config.sources:
        local = local_source_path(camera.url)
        check_distinct_outputs(Path(local) if local is not None else None, outputs, inputs)

    with ExitStack() as stack:
        # Outputs that every camera writes to: kinds that need no source (events, summary).
        # A broker gets one connection per camera: each camera's status topic has its own last will.
        broker = args.events if args.events and is_mqtt_url(args.events) else None
        if broker and len(config.sources) > 1 and parse_mqtt_url(broker).camera:
            raise ConfigError("--events: camera= in the broker URL names one camera; with several cameras each is "
                              "named by --source NAME=... or sources[].name")
        shared = open_sinks(None, None if broker else args.events, False, source_kind="stream", fps=None,
                            options=config.output, summary=args.summary, counts=args.counts)
        for sink in shared:
            stack.enter_context(sink)
        detector = build_detector(config.detector, config.models, config.runtime)
        classifiers = build_classifiers(config.classifier, config.models, config.runtime)
        cameras = []
        views: dict[str, Any] = {}  # --serve: each camera's live view, one more output of its own
        for spec in config.sources:
            own = spec.config(config)

            def open_own(source: Any, spec: Any = spec, own: Any = own) -> list[Any]:
                sinks = open_sinks(spec.output, spec.events, False, source_kind=source.kind, fps=source.fps,
                                   options=own.output, source_path=local_source_path(spec.url),
                                   summary=spec.summary, source_name=source.name, camera=spec.name,
                                   counts=spec.counts)
                if spec.name in views:
                    sinks.append(views[spec.name])
                if broker is None:
                    return sinks
                try:
                    return sinks + open_sinks(None, broker, False, source_kind=source.kind, fps=source.fps,
                                              options=own.output, source_name=source.name, camera=spec.name)
                except BaseException:
                    for sink in sinks:
                        sink.close()
                    raise

            pipeline = Pipeline(own, detector=detector, classifiers=classifiers, camera=spec.name)
            camera = Camera(spec, pipeline, partial(open_source, spec.url, options=own.source), open_own,
                            live=kinds[spec.name] in ("webcam", "stream"), max_frames=args.max_frames)
            cameras.append(camera)
        if args.serve is not None:
            from stream.serve.server import serve_cameras

            try:
                views.update(stack.enter_context(serve_cameras(args.serve, config, cameras)))
            except OSError as error:
                raise SinkError(f"cannot serve the web page on {args.serve}: {error.strerror or error}") from None
        for camera in cameras:
            stack.callback(camera.close)
            camera.start()
        _log_models(cameras[0].pipeline)
        logger.info("%d cameras: %s", len(cameras), ", ".join(f"{c.name} ({kinds[c.name]})" for c in cameras))
        stop.graceful = True
        try:
            result = run_cameras(cameras, shared, should_stop=lambda: stop.signum is not None)
        finally:
            stop.disarm()
        for name, camera_result in result.cameras.items():
            logger.info("camera %s: %s, %d frames; ms/frame %s; totals %s", name, result.status[name],
                        camera_result.frames, {k: v for k, v in camera_result.stage_ms.items() if v},
                        json.dumps(camera_result.totals))
        logger.info("%d frames of %d cameras in %.1f s (%.1f fps); %d classifier batches of %.1f faces on average",
                    result.frames, len(cameras), result.seconds, result.fps, result.batches,
                    result.batched_faces / max(result.batches, 1))
    if result.errors and all(c.frames == 0 for c in cameras):
        return _fail("; ".join(f"camera {name}: {error}" for name, error in result.errors.items()))
    return EXIT_OK


if __name__ == "__main__":
    code = main()
    # Imported after main(): importing stream.sources imports OpenCV, which reads its environment variables
    # (OPENCV_LOG_LEVEL, OPENCV_IO_MAX_IMAGE_PIXELS) once, when it loads; main() sets them first.
    from stream.sources.base import exit_past_stuck_readers

    sys.exit(exit_past_stuck_readers(code))
