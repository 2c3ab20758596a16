"""Every kind of config check, one row each, through the section classes (what ``--set`` and config.yaml reach):
booleans, choices, non-empty strings, lists of strings, ``int | word`` settings, open and closed bounds, and
infinity where allowed. tests/stream/test_config.py covers loading, files and the CLI; this covers the rules."""

from __future__ import annotations

import math

import pytest

from stream.config import (
    AnnotateConfig,
    ConfigError,
    DetectorConfig,
    ModelsConfig,
    RuntimeConfig,
    SourceOptions,
    TrackBookConfig,
    TrackerConfig,
    load_config,
)


@pytest.mark.parametrize(
    ("section", "values", "error", "match"),
    [
        (AnnotateConfig, {"draw_landmarks": "yes"}, TypeError,
         r"annotate\.draw_landmarks must be true or false, got 'yes'"),
        (AnnotateConfig, {"show_stats": 1}, TypeError, r"annotate\.show_stats must be true or false, got 1"),
        (RuntimeConfig, {"device": "tpu"}, ValueError, r"runtime\.device must be one of auto, cpu, cuda; got 'tpu'"),
        (RuntimeConfig, {"device": 3}, TypeError, r"runtime\.device must be a string, got 3"),
        (DetectorConfig, {"name": "  "}, ValueError, r"detector\.name must be a non-empty string, got '  '"),
        (ModelsConfig, {"local_dirs": [1, 2]}, TypeError,
         r"models\.local_dirs must be a list of strings, got \[1, 2\]"),
        (ModelsConfig, {"local_dirs": 5}, TypeError, r"models\.local_dirs must be a list of strings, got 5"),
        (DetectorConfig, {"interval": "sometimes"}, ValueError,
         r"detector\.interval must be auto or an integer in \[0, 30\], got 'sometimes'"),
        (DetectorConfig, {"interval": 31}, ValueError, r"detector\.interval must be in \[0, 30\], got 31"),
        (DetectorConfig, {"interval": 2.5}, TypeError, r"detector\.interval must be auto or an integer"),
        (TrackerConfig, {"frame_rate": 0.0}, ValueError, r"tracker\.frame_rate must be in \(0\.0, 1000\.0\], got 0\.0"),
        (TrackerConfig, {"frame_rate": 1000.5}, ValueError, r"frame_rate must be in \(0\.0, 1000\.0\]"),
        (SourceOptions, {"give_up_after_s": -1.0}, ValueError, r"source\.give_up_after_s must be in"),
        (SourceOptions, {"open_timeout_s": math.inf}, ValueError, r"source\.open_timeout_s must be a finite number"),
        (RuntimeConfig, {"intra_op_threads": 257}, ValueError, r"runtime\.intra_op_threads must be in \[0, 256\]"),
        (TrackBookConfig, {"fusion": "median"}, ValueError, r"trackbook\.fusion must be one of mean, geometric"),
    ],
)
def test_bad_values_are_refused_naming_the_key(section, values, error, match):
    with pytest.raises(error, match=match):
        section(**values)


@pytest.mark.parametrize(
    ("section", "values", "stored"),
    [
        (TrackerConfig, {"frame_rate": 1000.0}, {"frame_rate": 1000.0}),  # the closed upper bound is allowed
        (TrackerConfig, {"frame_rate": 1e-3}, {"frame_rate": 1e-3}),  # just above the open lower bound
        (SourceOptions, {"give_up_after_s": math.inf}, {"give_up_after_s": math.inf}),  # inf where allowed
        (SourceOptions, {"give_up_after_s": 0.0}, {"give_up_after_s": 0.0}),  # the closed lower bound
        (RuntimeConfig, {"intra_op_threads": 256, "inter_op_threads": 1}, {"intra_op_threads": 256}),
        (DetectorConfig, {"interval": 30}, {"interval": 30}),
        (DetectorConfig, {"interval": "auto"}, {"interval": "auto"}),
        (ModelsConfig, {"local_dirs": "models/here"}, {"local_dirs": ("models/here",)}),  # one folder as a string
        (ModelsConfig, {"local_dirs": ["a", "b"]}, {"local_dirs": ("a", "b")}),
        (AnnotateConfig, {"draw_landmarks": False}, {"draw_landmarks": False}),
    ],
)
def test_edge_values_are_accepted_and_normalised(section, values, stored):
    built = section(**values)
    for key, value in stored.items():
        assert getattr(built, key) == value and type(getattr(built, key)) is type(value)


def test_config_errors_are_value_errors_for_callers():
    with pytest.raises(ConfigError):
        load_config(overrides=["annotate.draw_landmarks=maybe"])


@pytest.mark.parametrize(
    ("section", "values", "match"),
    [
        (SourceOptions, {"reconnect_initial_s": 2.0, "reconnect_max_s": 1.0},
         r"source\.reconnect_max_s must be >= reconnect_initial_s \(2\.0\), got 1\.0"),
        (TrackBookConfig, {"min_observations": 6, "max_observations": 5},
         r"trackbook\.max_observations must be >= min_observations \(6\), got 5"),
        (TrackerConfig, {"track_activation_threshold": 0.3, "low_score_threshold": 0.4},
         r"low_score_threshold must be <= track_activation_threshold \(0\.3\), got 0\.4"),
    ],
)
def test_checks_across_keys(section, values, match):
    with pytest.raises(ConfigError, match=match):
        section(**values)
    equal = dict(values)
    equal[list(values)[1]] = values[list(values)[0]]  # equal values are fine
    section(**equal)


def test_a_stage_takes_its_section_as_a_section_a_mapping_or_a_dataclass_and_nothing_else():
    from dataclasses import dataclass

    from stream.config import settings

    @dataclass
    class Options:  # any dataclass with the section's keys, e.g. an application's own settings object
        min_observations: int = 4

    assert settings(TrackBookConfig, Options(), {}).min_observations == 4
    assert settings(TrackBookConfig, {"min_observations": 2}, {"fusion": "geometric"}).fusion == "geometric"
    assert settings(TrackBookConfig, None, {}) == TrackBookConfig()
    for bad in (5, "min_observations=2", Options):  # a number, a string, a class (not an instance)
        with pytest.raises(TypeError, match=r"options must be a TrackBookConfig, a mapping or a dataclass, got "):
            settings(TrackBookConfig, bad, {})
    with pytest.raises(TypeError, match=r"unknown trackbook setting\(s\) nope; valid: min_observations"):
        settings(TrackBookConfig, None, {"nope": 1})


def test_config_files_at_the_size_limit_empty_or_unreadable(tmp_path):
    from stream.config import MAX_CONFIG_BYTES

    at_limit = tmp_path / "at_limit.yaml"
    line = "trackbook:\n  min_observations: 4\n"
    at_limit.write_text(line + "#" * (MAX_CONFIG_BYTES - len(line) - 1) + "\n", encoding="utf-8")
    assert at_limit.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(at_limit).trackbook.min_observations == 4
    over = tmp_path / "over.yaml"
    over.write_text(line + "#" * (MAX_CONFIG_BYTES - len(line)) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="over.yaml"):
        load_config(over)
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_config(empty) == load_config(empty, ())  # an empty file: the built-in defaults
    assert load_config(empty).trackbook == TrackBookConfig()
    null_section = tmp_path / "null.yaml"
    null_section.write_text("trackbook:\ndetector:\n  interval: 2\n", encoding="utf-8")
    loaded = load_config(null_section)
    assert loaded.trackbook == TrackBookConfig() and loaded.detector.interval == 2
    with pytest.raises(ConfigError, match=r"is not a regular file"):
        load_config(tmp_path)  # a folder


@pytest.mark.parametrize("override", ["trackbook", "trackbook.=3", ".min_observations=3", "trackbook.min_observations"])
def test_malformed_overrides_are_refused(override):
    with pytest.raises(ConfigError):
        load_config(overrides=[override])


def test_output_options_refuse_unknown_keys():
    from stream.config import SinkOptions

    assert SinkOptions.coerce({"video_preset": "fast"}).video_preset == "fast"
    with pytest.raises(ValueError, match=r"unknown output option\(s\) nope; valid keys: "):
        SinkOptions.coerce({"nope": 1})
