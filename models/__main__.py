"""``python -m models list|fetch [NAME...]``: show and fetch the registry's models."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from models.cache import cache_dir
from models.fetch import ModelError, is_cached, model_path
from models.registry import MODELS, load_exports


def _local_dirs(config_path: str | None) -> list[str]:
    from stream.config import ConfigError, load_config

    try:
        return list(load_config(config_path).models.local_dirs)
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        raise SystemExit(2) from None


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line ``error: ...`` (exit 2) instead of a usage dump, as ``python -m stream``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `python -m models --help`)\n")


#: The default pipeline's models: the classifier pair, YuNet (``detector.name: auto``'s choice on a machine
#: without the dynamic-input YuNet) and RetinaFace (auto's fallback when YuNet cannot be had), and the photo
#: of the built-in demo source.
DEFAULT_FETCH = ("cydral_age", "cydral_gender", "yunet", "retinaface", "demo_astronaut")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m models", description=__doc__)
    parser.add_argument("--config", default=None, help="config.yaml whose models.local_dirs are searched")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="print the registry with licences and where each model is cached")
    fetch = sub.add_parser("fetch", help="fetch and verify models (default: the default pipeline's models)")
    fetch.add_argument("names", nargs="*", help=f"model names (default: {' '.join(DEFAULT_FETCH)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    extra = _local_dirs(args.config)

    if args.command == "list":
        load_exports()  # the user's own exports (manifests in the cache) are registry entries too
        rows = [("name", "task", "licence", "available", "provenance")]
        for name, spec in MODELS.items():
            rows.append((name, spec.task, spec.licence_note, is_cached(name, extra) or "-", spec.provenance[:70]))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] + "\n")
        sys.stdout.write(f"\ncache: {cache_dir()}\n")
        return 0

    names = args.names or list(DEFAULT_FETCH)
    failed = 0
    for name in names:
        try:
            path = model_path(name, extra_dirs=extra)
        except (ModelError, ValueError) as error:
            sys.stderr.write(f"error: {error}\n")
            failed += 1
        else:
            sys.stdout.write(f"{name}: {path}\n")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
