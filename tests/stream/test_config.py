import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from stream.config import SECTIONS, Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_repo_config_loads_and_equals_the_defaults():
    # config.yaml documents every key; its values are the dataclass defaults, so the two cannot drift.
    import yaml

    assert load_config() == Config()
    # Every key is written out (equality alone would pass for a key missing from the file: it loads as its default).
    written = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    assert {(s, k) for s, keys in written.items() if s in SECTIONS for k in keys} == \
        {(s, k) for s, cls in SECTIONS.items() for k in cls.keys()}  # noqa: SIM118 (a classmethod)
    assert set(SECTIONS) <= set(written)


def test_every_key_in_config_yaml_is_commented():
    for line in (REPO / "config.yaml").read_text().splitlines():
        if line.startswith("  ") and ":" in line and not line.strip().startswith("#"):
            assert "#" in line, f"config.yaml key without a comment: {line.strip()}"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["detector.nope=1"], r"unknown key detector\.nope; valid keys in detector"),
        (["nosection.key=1"], r"unknown config section 'nosection'"),
        (["detector.score_threshold=1.5"], r"detector\.score_threshold must be in \[0\.0, 1\.0\], got 1\.5"),
        (["tracker.lost_track_buffer=-1"], r"tracker\.lost_track_buffer must be in"),
        (["scheduler.max_faces_per_frame=abc"], r"scheduler\.max_faces_per_frame must be an integer, got 'abc'"),
        (["detector.interval=.nan"], r"detector\.interval must be auto or an integer"),
        (["runtime.device=tpu"], r"runtime\.device must be one of auto, cpu, cuda; got 'tpu'"),
        (["output.video_preset=fastest"], r"output\.video_preset must be one of"),
        (["annotate.draw_landmarks=maybe"], r"annotate\.draw_landmarks must be true or false"),
        (["detector"], r"--set expects section\.key=value"),
    ],
)
def test_bad_overrides_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_override_types_follow_yaml():
    config = load_config(None, ["detector.score_threshold=0.45", "scheduler.max_faces_per_frame=4",
                                "annotate.show_stats=false", "models.local_dirs=[a, b]"])
    assert config.detector.score_threshold == 0.45
    assert config.scheduler.max_faces_per_frame == 4
    assert config.annotate.show_stats is False
    assert config.models.local_dirs == ("a", "b")


@pytest.mark.parametrize(
    ("text", "match"),
    [("detector: [1, 2]\n", "must be a mapping of keys"), ("- a\n", "must be a mapping of sections"),
     ("detector: {name: [\n", "not valid YAML")],
)
def test_bad_files(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/config.yaml")


STAGES = {"tracker": ("stream.tracking", "ByteTracker"), "identity": ("stream.tracking.identity", "Identities"),
          "scheduler": ("stream.scheduler", "Scheduler"),
          "trackbook": ("stream.trackbook", "TrackBook"), "annotate": ("stream.annotate", "Annotator"),
          "quality": ("stream.quality", "QualityRule"), "labels": ("stream.labels", "LabelRule")}


@pytest.mark.parametrize("section", sorted(STAGES))
def test_stages_take_their_settings_from_their_section_only(section):
    # One home per setting: a stage built without arguments holds its section's defaults, and one built from a
    # changed section holds the changed values (a default written into the class would show here).
    import importlib

    module, name = STAGES[section]
    cls = getattr(importlib.import_module(module), name)
    defaults = SECTIONS[section]()
    assert {k: getattr(cls(), k) for k in type(defaults).keys()}  # noqa: SIM118 (a classmethod) == dataclasses.asdict(defaults)
    changed = {f.name: _another_value(f, getattr(defaults, f.name)) for f in dataclasses.fields(defaults)}
    if section == "tracker":
        changed["low_score_threshold"] = 0.05  # must stay <= the activation threshold
    built = cls(SECTIONS[section](**changed))
    assert {k: getattr(built, k) for k in changed} == changed
    with pytest.raises(TypeError, match="unknown"):
        cls(not_a_setting=1)


def test_model_wrappers_and_the_live_view_default_to_their_sections():
    # Classes built with keywords rather than a section (detectors, classifiers: build_detector/build_classifiers
    # pass the section's values) take their defaults from the section, so a default cannot differ from the config.
    import inspect

    from stream.classify import OnnxClassifier
    from stream.config import ClassifierConfig, DetectorConfig, ServeConfig
    from stream.detectors import _families
    from stream.serve.live import CameraView

    detector_keys = set(DetectorConfig.keys()) - {"name", "interval"}  # the class and the pipeline's schedule
    for family, cls in _families().items():
        parameters = inspect.signature(cls.__init__).parameters
        assert {k: parameters[k].default for k in detector_keys} == {k: getattr(DetectorConfig(), k)
                                                                      for k in detector_keys}, family
    assert inspect.signature(OnnxClassifier.__init__).parameters["max_batch_size"].default == \
        ClassifierConfig().max_batch_size
    view = CameraView("cam0", "door", ServeConfig(jpeg_quality=70, mjpeg_fps=5.0))
    assert (view.jpeg_quality, view.min_encode_interval_s) == (70, 0.2)
    defaults = CameraView("cam0", "door")
    assert (defaults.jpeg_quality, defaults.min_encode_interval_s) == (ServeConfig().jpeg_quality,
                                                                        1.0 / ServeConfig().mjpeg_fps)


def _another_value(field, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value * 0.5 + 0.01, 3)
    choices = field.metadata.get("choices")
    if choices is None:  # a free name (identity.embedding_model)
        return "none" if value != "none" else "other"
    return next(c for c in choices if c != value)


def _readme_settings() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and "." in cells[0] and cells[1].startswith("`"):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def test_readme_settings_table_gives_every_default():
    # The README's table is a copy for readers; its values must be the ones the code uses.
    import yaml

    rows = _readme_settings()
    for name, cls in SECTIONS.items():
        for key, value in dataclasses.asdict(cls()).items():
            where = f"{name}.{key}"
            assert where in rows, f"README settings table lacks {where}"
            shown = yaml.safe_load(rows[where])
            assert (list(value) if isinstance(value, tuple) else value) == shown, (where, rows[where], value)
    assert set(rows) == {f"{n}.{k}" for n, c in SECTIONS.items() for k in c.keys()}  # noqa: SIM118 (a classmethod)


def test_readme_mqtt_options_give_every_default():
    # The broker URL's options (``--events mqtt://...?heartbeat=30``) are settings too: their one home is
    # stream.sinks.mqtt.MqttSettings (defaults) with _NUMBERS (bounds); the README's table repeats the defaults.
    import yaml

    from stream.sinks.mqtt import _FLAGS, _NUMBERS, QUERY_KEYS, MqttSettings

    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("Options (query parameters; all optional):", 1)[1].split("\n\n", 2)[1]
    shown: dict[str, str] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names, values = [n.strip(" `") for n in cells[0].split(",")], [v.strip(" `") for v in cells[1].split(",")]
        shown.update(zip(names, values if len(values) == len(names) else values * len(names), strict=True))
    assert set(shown) == set(QUERY_KEYS), sorted(set(shown) ^ set(QUERY_KEYS))
    defaults = {f.name: f.default for f in dataclasses.fields(MqttSettings)}
    for option, (field_name, _, _) in _NUMBERS.items():
        assert yaml.safe_load(shown[option]) == defaults[field_name], (option, shown[option], defaults[field_name])
    for option, field_name in _FLAGS.items():
        assert bool(yaml.safe_load(shown[option])) is defaults[field_name], (option, shown[option])


FLOAT_KEYS = [(name, f.name) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
              if f.type in ("float", float)]
NUMBER_KEYS = FLOAT_KEYS + [(name, f.name) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
                            if f.type in ("int", int, "int | str")]


@pytest.mark.parametrize(("section", "key"), FLOAT_KEYS)
@pytest.mark.parametrize("value", [".nan", "-.inf"])
def test_no_numeric_setting_accepts_nan_or_minus_infinity(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be"):
        load_config(None, [f"{section}.{key}={value}"])


@pytest.mark.parametrize(("section", "key"), NUMBER_KEYS)
@pytest.mark.parametrize("value", ["null", "[1, 2]", "{a: 1}", "'3'"])
def test_numeric_settings_refuse_other_types_in_one_line(section, key, value):
    with pytest.raises(ConfigError, match=rf"^{section}\.{key} must be [^\n]*$"):
        load_config(None, [f"{section}.{key}={value}"])


def test_infinity_only_where_it_means_something():
    assert load_config(None, ["source.give_up_after_s=.inf"]).source.give_up_after_s == float("inf")
    with pytest.raises(ConfigError, match="finite"):
        load_config(None, ["detector.score_threshold=.inf"])


def test_yaml_aliases_are_refused_so_loading_cannot_blow_up(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20))
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        load_config(path)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)


def test_source_and_output_sections_are_the_options_their_stages_take():
    from stream.sinks import SinkOptions
    from stream.sources import SourceOptions

    assert SECTIONS["source"] is SourceOptions and SECTIONS["output"] is SinkOptions


def test_importing_config_and_cli_help_do_not_load_heavy_modules():
    code = (
        "import sys, contextlib, io\n"
        "import stream.config\n"
        "from stream.__main__ import build_parser\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        build_parser().parse_args(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('onnxruntime', 'torch', 'cv2') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("value, fps, expected", [("auto", 30.0, 1), ("auto", 29.97, 1), ("auto", 24.5, 1),
                                                  ("auto", 15.0, 0), ("auto", None, 0), (2, 30.0, 2), (0, 60.0, 0)])
def test_detection_interval_auto_keeps_detection_at_12_5_hz_or_more(value, fps, expected):
    from stream.config import detection_interval

    assert detection_interval(value, fps) == expected
    assert load_config(None, [f"detector.interval={value}"]).detector.interval == value


@pytest.mark.parametrize("value", ["often", "true", "31", "-1"])
def test_bad_detection_interval(value):
    with pytest.raises(ConfigError, match="detector.interval"):
        load_config(None, [f"detector.interval={value}"])
