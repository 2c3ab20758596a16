import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from stream.config import SECTIONS, Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_repo_config_loads_and_equals_the_defaults():
    # config.yaml documents every key; its values are the dataclass defaults, so the two cannot drift.
    assert load_config() == Config()


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


def _constructor_params(section: str) -> set[str]:
    from stream.annotate import Annotator
    from stream.scheduler import Scheduler
    from stream.trackbook import TrackBook
    from stream.tracking import ByteTracker

    classes = {"tracker": ByteTracker, "scheduler": Scheduler, "trackbook": TrackBook, "annotate": Annotator}
    return {p for p in inspect.signature(classes[section].__init__).parameters if p != "self"}


@pytest.mark.parametrize("section", ["tracker", "scheduler", "trackbook", "annotate"])
def test_section_keys_are_constructor_arguments(section):
    keys = {f.name for f in dataclasses.fields(SECTIONS[section])}
    assert keys == _constructor_params(section)


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
