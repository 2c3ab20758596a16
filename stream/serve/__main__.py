"""``python -m stream.serve``: the web page (photo and clip upload, JSON API), optionally with a live camera.

Exit codes: 2 bad input (one-line error), 130 stopped with Ctrl-C, 143 stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from stream.config import MAX_IMAGE_PIXELS, ConfigError, ServeConfig, load_cli_config, replace
from stream.serve import TOKEN_ENV, with_env_token

logger = logging.getLogger("stream.serve")
EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m stream.serve",
                     description="Web page: drop a photo or a short clip and see every face's age group and "
                                 "gender; with --source, the live view and the dashboard of that camera.",
                     epilog=f"The access token can also come from ${TOKEN_ENV} (keeps it out of the process list).")
    parser.add_argument("--host", help=f"address to listen on (default serve.host: {ServeConfig.host}; 127.0.0.1: "
                                        "this machine only)")
    parser.add_argument("--port", type=int,
                        help=f"TCP port (default serve.port: {ServeConfig.port}; 0 = any free port)")
    parser.add_argument("--token", help="access token every route but /healthz requires (default serve.token)")
    parser.add_argument("--source", help="also show this camera live: webcam index, rtsp:// URL or video file")
    parser.add_argument("--loop", action="store_true", help="play a video file --source again when it ends")
    parser.add_argument("--config", help="config YAML (default: the repo's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config key, e.g. --set annotate.privacy=blur (repeatable)")
    parser.add_argument("--detector", help="detector model name, or auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="onnxruntime device")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    # Before OpenCV is imported (it reads this once): no image may decode to more than this (decompression bombs).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    if args.log_level != "DEBUG":
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    try:
        config = load_cli_config(args.config, args.overrides, detector=args.detector, device=args.device)
        config = with_env_token(config)
        changes = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
        if args.token is not None:
            changes["token"] = args.token
        if changes:
            config = replace(config, "serve", **changes)
    except ConfigError as error:
        return _fail(str(error))

    from models.fetch import ModelError
    from stream.config import camera_name
    from stream.pipeline import check_model_names
    from stream.runtime import RuntimeUnavailable
    from stream.serve.app import create_app
    from stream.serve.server import CameraRunner, Server, new_hub
    from stream.sources import SourceError, redact_url

    try:
        check_model_names(config)
    except ValueError as error:
        return _fail(str(error))
    hub = new_hub(config)
    runner = None
    try:
        app = create_app(config, hub)
        models = app.app.state.analyzer.models
        for model in (models["detector"], *models["classifiers"]):
            if not model["commercial_use"]:  # as the CLI warns; the page flags it too
                logger.warning("model %s is not licensed for commercial use: %s", model["name"], model["licence"])
        if args.source is not None:
            view = hub.add(redact_url(args.source), config.serve, key=camera_name(args.source))
            runner = CameraRunner(args.source, config, view, loop=args.loop)
        if runner is not None:
            runner.start()  # a source that cannot be opened is a one-line error, before the server starts
        server = Server(app, config.serve.host, config.serve.port)
        # The URL, never the token: the token is not logged.
        logger.info("serving on %s%s", server.url, " (access token required)" if config.serve.token else "")
        server.run()
    except (ModelError, RuntimeUnavailable, SourceError) as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot serve on {config.serve.host}:{config.serve.port}: {error.strerror or error}")
    except KeyboardInterrupt:
        # uvicorn has shut the server down and re-raised the Ctrl-C it caught. (SIGTERM it re-raises too, and
        # its default action ends the process: exit status 143.)
        logger.info("stopped (Ctrl-C)")
        return EXIT_INTERRUPTED
    finally:
        if runner is not None:
            runner.stop()
    return EXIT_OK


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    code = main()
    # Imported after main(), which sets OpenCV's environment variables before anything loads OpenCV.
    from stream.sources.base import exit_past_stuck_readers

    sys.exit(exit_past_stuck_readers(code))
