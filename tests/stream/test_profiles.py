"""Model profiles (stream.profiles, models.profile / --profile): commercial refuses, accurate picks utk_multihead."""

from __future__ import annotations

import pytest

from models.registry import get_spec
from stream.config import load_cli_config, load_config
from stream.detectors import AUTO_ORDER
from stream.profiles import ProfileError, apply_profile, check_profile
from tests.conftest import shared_file
from tests.support.cli_util import read_events, run_cli


def test_commercial_is_the_default_and_the_default_models_pass():
    config = load_config()
    assert config.models.profile == "commercial"
    check_profile(apply_profile(config))
    # detector auto names no model: everything it may pick is commercially usable.
    assert all(get_spec(name).commercial_use for name in AUTO_ORDER)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["classifier.age_model=utk_multihead", "classifier.gender_model=none"], r"model 'utk_multihead'"),
        (["detector.name=scrfd_2.5g"], r"model 'scrfd_2\.5g' is not licensed for commercial use \(InsightFace"),
    ],
)
def test_commercial_refuses_every_non_commercial_model(overrides, message):
    with pytest.raises(ProfileError, match=message):
        check_profile(apply_profile(load_config(None, overrides), overrides))
    for profile in ("research", "accurate"):
        check_profile(apply_profile(load_cli_config(None, overrides, profile=profile), overrides))


def test_accurate_picks_utk_multihead_unless_told_otherwise():
    accurate = apply_profile(load_cli_config(None, [], profile="accurate"))
    assert (accurate.classifier.age_model, accurate.classifier.gender_model) == ("utk_multihead", "none")
    overrides = ["classifier.age_model=cydral_age", "classifier.gender_model=cydral_gender"]
    chosen = apply_profile(load_cli_config(None, overrides, profile="accurate"), overrides)
    assert (chosen.classifier.age_model, chosen.classifier.gender_model) == ("cydral_age", "cydral_gender")
    research = apply_profile(load_cli_config(None, [], profile="research"))
    assert research.classifier.age_model == "cydral_age"


def test_cli_logs_the_profile_and_runs_the_accurate_model(tmp_path):
    clip = shared_file("videos", "talking_man_512.mp4")
    events = tmp_path / "e.jsonl"
    result = run_cli("--source", str(clip), "--profile", "accurate", "--max-frames", "20", "--events", str(events),
                     log_level="INFO")
    assert result.returncode == 0, result.stderr
    assert "profile accurate: detector auto, classifiers utk_multihead" in result.stderr
    assert "model utk_multihead (age_gender)" in result.stderr and "NON-COMMERCIAL" in result.stderr
    labelled = [f for e in read_events(events) for f in e["faces"] if f["age_range"] is not None]
    assert labelled
    default = run_cli("--source", str(clip), "--max-frames", "2", log_level="INFO")
    assert default.returncode == 0 and "profile commercial: detector auto, classifiers cydral_age + cydral_gender" \
        in default.stderr
