"""Configuration: ``config.yaml`` sections loaded into frozen, validated dataclasses.

One section per stage; a section's keys are the constructor arguments of that
stage's class (``tests/stream/test_config.py`` checks that they stay in step).
This module imports only the standard library, numpy and PyYAML, so loading the config or
printing the CLI help never pulls in onnxruntime, OpenCV or torch. The ``source`` and ``output``
sections are the option classes that ``stream.sources`` and ``stream.sinks`` take, defined here.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


class ConfigError(ValueError):
    """A config file, key or value is wrong (one-line message naming it)."""


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


def _check_range(section: str, key: str, value: float, low: float | None = None, high: float | None = None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(f"{section}.{key} must be in {bounds}, got {value!r}")


def _check_choice(section: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{section}.{key} must be one of {', '.join(choices)}; got {value!r}")


@dataclass(frozen=True)
class ModelsConfig:
    local_dirs: tuple[str, ...] = ("../shared/models",)
    download: bool = True

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    allow_spinning: bool = False

    def validate(self) -> None:
        _check_choice("runtime", "device", self.device, ("auto", "cpu", "cuda"))
        _check_range("runtime", "intra_op_threads", self.intra_op_threads, 0, 256)
        _check_range("runtime", "inter_op_threads", self.inter_op_threads, 1, 256)


# libx264 presets, fastest first (the encoder rejects any other name).
X264_PRESETS: tuple[str, ...] = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
RTSP_TRANSPORTS: tuple[str, ...] = ("tcp", "udp")


@dataclass(frozen=True)
class SourceOptions:
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
    """

    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 2.0
    give_up_after_s: float = 300.0
    wait_for_source: bool = False
    queue_size: int = 8
    max_image_height: int = 1080

    def __post_init__(self) -> None:
        for key in ("open_timeout_s", "read_timeout_s", "reconnect_initial_s", "reconnect_max_s"):
            value = _source_number(key, getattr(self, key))
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"source.{key} must be a finite number > 0, got {value!r}")
        give_up = _source_number("give_up_after_s", self.give_up_after_s)
        if not give_up >= 0:
            raise ValueError(f"source.give_up_after_s must be >= 0 (or inf), got {give_up!r}")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                "source.reconnect_max_s must be >= reconnect_initial_s "
                f"({self.reconnect_initial_s!r}), got {self.reconnect_max_s!r}"
            )
        if self.rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(
                f"source.rtsp_transport must be one of {list(RTSP_TRANSPORTS)}, got {self.rtsp_transport!r}"
            )
        if not isinstance(self.wait_for_source, bool):
            raise TypeError(f"source.wait_for_source must be a bool, got {type(self.wait_for_source).__name__}")
        for key, low in (("queue_size", 1), ("max_image_height", 16)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"source.{key} must be an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"source.{key} must be >= {low}, got {value!r}")

    def validate(self) -> None:
        """Checked on construction (``__post_init__``), also when built outside a config file."""


def _source_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"source.{key} must be a number, got {type(value).__name__}")
    return float(value)


#: ``detector.interval: auto`` detects on every frame of sources below this frame rate and on every other
#: frame at or above it, so detection runs at 12.5 Hz or more either way.
AUTO_INTERVAL_MIN_FPS = 25.0


def detection_interval(setting: int | str, fps: float | None) -> int:
    """Frames skipped between detections for a ``detector.interval`` setting and a source frame rate."""
    if setting != "auto":
        return int(setting)
    # Half a frame of slack: a 25 fps camera may report 24.97.
    return 1 if fps is not None and fps >= AUTO_INTERVAL_MIN_FPS - 0.5 else 0


@dataclass(frozen=True)
class DetectorConfig:
    name: str = "auto"
    input_long_side: int = 640
    score_threshold: float = 0.3
    nms_iou_threshold: float = 0.4
    max_faces: int = 200
    interval: int | str = "auto"

    def validate(self) -> None:
        if isinstance(self.interval, (str, bool)):
            if self.interval != "auto":
                raise ConfigError(f"detector.interval must be auto or an integer 0-30, got {self.interval!r}")
        else:
            _check_range("detector", "interval", self.interval, 0, 30)
        _check_range("detector", "input_long_side", self.input_long_side, 64, 4096)
        _check_range("detector", "score_threshold", self.score_threshold, 0.0, 1.0)
        _check_range("detector", "nms_iou_threshold", self.nms_iou_threshold, 0.0, 1.0)
        _check_range("detector", "max_faces", self.max_faces, 1, 10000)


@dataclass(frozen=True)
class TrackerConfig:
    track_activation_threshold: float = 0.5
    low_score_threshold: float = 0.1
    minimum_matching_threshold: float = 0.8
    lost_track_buffer: int = 30
    frame_rate: float = 30.0
    minimum_consecutive_frames: int = 2

    def validate(self) -> None:
        _check_range("tracker", "track_activation_threshold", self.track_activation_threshold, 0.0, 1.0)
        _check_range("tracker", "low_score_threshold", self.low_score_threshold, 0.0, self.track_activation_threshold)
        _check_range("tracker", "minimum_matching_threshold", self.minimum_matching_threshold, 0.0, 1.0)
        _check_range("tracker", "lost_track_buffer", self.lost_track_buffer, 0, 100000)
        _check_range("tracker", "frame_rate", self.frame_rate, 1.0, 1000.0)
        _check_range("tracker", "minimum_consecutive_frames", self.minimum_consecutive_frames, 1, 1000)


@dataclass(frozen=True)
class SchedulerConfig:
    max_faces_per_frame: int = 4
    min_face_size: int = 32
    min_score: float = 0.5
    warmup_interval_frames: int = 2
    refresh_interval_frames: int = 15
    settled_observations: int = 10
    settled_interval_frames: int = 75

    def validate(self) -> None:
        _check_range("scheduler", "max_faces_per_frame", self.max_faces_per_frame, 0, 1024)
        _check_range("scheduler", "min_face_size", self.min_face_size, 0, 10000)
        _check_range("scheduler", "min_score", self.min_score, 0.0, 1.0)
        _check_range("scheduler", "warmup_interval_frames", self.warmup_interval_frames, 1, 100000)
        _check_range("scheduler", "refresh_interval_frames", self.refresh_interval_frames, 1, 100000)
        _check_range("scheduler", "settled_observations", self.settled_observations, 1, 100000)
        _check_range("scheduler", "settled_interval_frames", self.settled_interval_frames, 1, 100000)


@dataclass(frozen=True)
class ClassifierConfig:
    age_model: str = "cydral_age"
    gender_model: str = "cydral_gender"
    max_batch_size: int = 32
    alignment: str = "similarity"

    def validate(self) -> None:
        _check_range("classifier", "max_batch_size", self.max_batch_size, 1, 4096)
        _check_choice("classifier", "alignment", self.alignment, ("similarity", "seed_upright"))


@dataclass(frozen=True)
class TrackBookConfig:
    min_observations: int = 5
    max_observations: int = 50
    forget_after_frames: int = 300
    switch_margin: float = 0.1
    switch_after: int = 1
    switch_confidence: float = 2.0
    gender_margin: float = 0.3
    fusion: str = "mean"

    def validate(self) -> None:
        _check_range("trackbook", "switch_confidence", self.switch_confidence, 0.0, 100.0)
        _check_choice("trackbook", "fusion", self.fusion, ("mean", "geometric"))
        _check_range("trackbook", "switch_after", self.switch_after, 1, 1000)
        _check_range("trackbook", "gender_margin", self.gender_margin, 0.0, 0.99)
        _check_range("trackbook", "switch_margin", self.switch_margin, 0.0, 0.99)
        _check_range("trackbook", "min_observations", self.min_observations, 1, 10000)
        _check_range("trackbook", "max_observations", self.max_observations, self.min_observations, 100000)
        _check_range("trackbook", "forget_after_frames", self.forget_after_frames, 1, 10**7)


#: ``annotate.privacy``: how faces are obscured in every video output (stream/privacy.py).
PRIVACY_MODES: tuple[str, ...] = ("none", "blur", "pixelate")


@dataclass(frozen=True)
class AnnotateConfig:
    draw_landmarks: bool = True
    font_scale: float = 0.0
    show_stats: bool = True
    privacy: str = "none"

    def validate(self) -> None:
        _check_range("annotate", "font_scale", self.font_scale, 0.0, 10.0)
        _check_choice("annotate", "privacy", self.privacy, PRIVACY_MODES)


@dataclass(frozen=True)
class ServeConfig:
    """The web application (``python -m stream.serve``, ``python -m stream --serve``): stream/serve/."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""
    max_upload_mb: float = 20.0
    max_clip_s: float = 30.0
    workers: int = 2
    jpeg_quality: int = 80
    mjpeg_fps: float = 15.0
    history_tracks: int = 100000

    def validate(self) -> None:
        if not self.host.strip():
            raise ConfigError("serve.host must not be empty (127.0.0.1 for this machine only, 0.0.0.0 for all)")
        _check_range("serve", "port", self.port, 0, 65535)
        _check_range("serve", "max_upload_mb", self.max_upload_mb, 0.01, 4096.0)
        _check_range("serve", "max_clip_s", self.max_clip_s, 0.1, 3600.0)
        _check_range("serve", "workers", self.workers, 1, 64)
        _check_range("serve", "jpeg_quality", self.jpeg_quality, 1, 100)
        _check_range("serve", "mjpeg_fps", self.mjpeg_fps, 0.1, 120.0)
        _check_range("serve", "history_tracks", self.history_tracks, 1, 10**7)


def _output_int(name: str, value: object, low: int, high: int) -> int:
    # bool is an int subclass; `video_crf: true` in YAML is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"output.{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"output.{name} must be in [{low}, {high}], got {value!r}")
    return int(value)


def _output_float(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"output.{name} must be a number in ({low}, {high}], got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low < number <= high:
        raise ValueError(f"output.{name} must be in ({low}, {high}], got {value!r}")
    return number


def _output_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"output.{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


@dataclass(frozen=True)
class SinkOptions:
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
        window_name: Title of the ``--show`` window.
    """

    video_crf: int = 23
    video_preset: str = "ultrafast"
    video_writer_thread: bool = True
    video_queue_size: int = 8
    image_jpeg_quality: int = 95
    rtsp_fps: float = 25.0
    rtsp_reconnect_max_s: float = 8.0
    rtsp_transport: str = "tcp"
    window_name: str = "faces"

    def __post_init__(self) -> None:
        # Frozen: normalized values are stored through object.__setattr__.
        set_ = object.__setattr__
        set_(self, "video_crf", _output_int("video_crf", self.video_crf, 0, 51))
        _output_choice("video_preset", self.video_preset, X264_PRESETS)
        if not isinstance(self.video_writer_thread, bool):
            raise ValueError(f"output.video_writer_thread must be true or false, got {self.video_writer_thread!r}")
        set_(self, "video_queue_size", _output_int("video_queue_size", self.video_queue_size, 1, 1024))
        set_(self, "image_jpeg_quality", _output_int("image_jpeg_quality", self.image_jpeg_quality, 1, 100))
        set_(self, "rtsp_fps", _output_float("rtsp_fps", self.rtsp_fps, 0.0, 240.0))
        reconnect = _output_float("rtsp_reconnect_max_s", self.rtsp_reconnect_max_s, 0.0, 3600.0)
        set_(self, "rtsp_reconnect_max_s", reconnect)
        _output_choice("rtsp_transport", self.rtsp_transport, RTSP_TRANSPORTS)
        if not isinstance(self.window_name, str) or not self.window_name.strip():
            raise ValueError(f"output.window_name must be a non-empty string, got {self.window_name!r}")

    @classmethod
    def coerce(cls, options: SinkOptions | Mapping[str, Any] | Any) -> SinkOptions:
        """SinkOptions from itself, a mapping, or a dataclass instance holding some of its keys.

        Lets a configuration object of another class (e.g. the loaded ``output:`` section)
        be passed as is; missing keys keep their defaults.

        Args:
            options: A SinkOptions (returned unchanged), a mapping, or a dataclass instance.

        Returns:
            The options.

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

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The option names, in declaration order (the keys of the ``output:`` section)."""
        return tuple(f.name for f in fields(cls))

    def validate(self) -> None:
        """Checked on construction (``__post_init__``), also when built outside a config file."""


@dataclass(frozen=True)
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    source: SourceOptions = field(default_factory=SourceOptions)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    trackbook: TrackBookConfig = field(default_factory=TrackBookConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    output: SinkOptions = field(default_factory=SinkOptions)
    serve: ServeConfig = field(default_factory=ServeConfig)


SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name] for f in fields(Config)}


def _coerce(section: str, key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against the field's type; YAML gives ints where floats are meant."""
    where = f"{section}.{key}"
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(str(v) for v in value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(annotation, types.UnionType):
        return value
    raise ConfigError(f"{where}: unsupported type {annotation!r}")


def _build_section(name: str, values: dict[str, Any]) -> Any:
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]}; valid keys in {name}: {', '.join(sorted(known))}")
    kwargs = {key: _coerce(name, key, value, hints[key]) for key, value in values.items()}
    try:
        section = cls(**kwargs)
    except (TypeError, ValueError) as error:  # sections that validate on construction
        raise ConfigError(str(error)) from None
    section.validate()
    return section


def _parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (so ``true``, ``0.5``, ``[a, b]`` work)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


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
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {config_path} not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(f"config file {config_path} is not valid YAML: {first}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_path} must be a mapping of sections")
        raw = {k: dict(v or {}) if isinstance(v, dict) or v is None else v for k, v in loaded.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        raw.setdefault(section, {})
        if isinstance(raw[section], dict):
            raw[section][name] = _parse_scalar(value.strip())
    sections = {}
    for name, values in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown config section {name!r}; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section {name!r} must be a mapping of keys, got {values!r}")
        sections[name] = _build_section(name, values)
    return Config(**sections)


def load_cli_config(path: str | None, overrides: list[str] | tuple[str, ...], *, detector: str | None = None,
                    device: str | None = None) -> Config:
    """:func:`load_config` plus the command lines' ``--detector`` and ``--device`` shortcuts.

    Raises:
        ConfigError: As :func:`load_config`, or a bad shortcut value.
    """
    config = load_config(path, overrides)
    if detector:
        config = replace(config, "detector", name=detector)
    if device:
        config = replace(config, "runtime", device=device)
    return config


def replace(config: Config, section: str, **changes: Any) -> Config:
    """A copy of ``config`` with keys of one section changed (validated)."""
    current = dataclasses.asdict(getattr(config, section))
    current.update(changes)
    return dataclasses.replace(config, **{section: _build_section(section, current)})


def as_kwargs(section: Any) -> dict[str, Any]:
    """A section's keys as constructor keyword arguments."""
    return {f.name: getattr(section, f.name) for f in fields(section)}
