"""Hostile values and files for every setting (issue 15, classes 6, 7 and 11), in process: each is refused with a
:class:`ConfigError` (one line, naming the key) or accepted as a finite, in-bounds value, whichever way it comes:
``--set section.key=value``, a config file, ``--set CAMERA:section.key=value`` or a camera's ``overrides:``.
The CLI turns a ConfigError into ``error: ...`` and exit 2 (tests/stream/test_hostile_inputs.py)."""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import traceback
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from stream.config import (
    MAX_YAML_DEPTH,
    PER_CAMERA_KEYS,
    PER_CAMERA_SECTIONS,
    SECTIONS,
    Config,
    ConfigError,
    load_cli_config,
    load_config,
)
from tests.stream.test_permissions import as_unprivileged

# YAML texts a hostile user may give any setting: NaN, infinities, nulls, containers, quoted numbers, booleans for
# numbers, overflowing floats and ints, negative zero, blanks, non-ASCII digits, other YAML types.
VALUES = [".nan", ".NaN", ".inf", "-.inf", "null", "~", "[]", "{}", "[1,2]", '"1"', "true", "1e400", "-1e400", "-0",
          "-.0", "99999999999999999999", "-99999999999999999999", "-1", "''", "'   '", "١٢", "2020-01-01",
          "!!binary aGk=", "[[[1]]]"]
SETTINGS = [(name, f.name) for name, cls in SECTIONS.items() for f in fields(cls)]
CLIP = "talking_man_512.mp4"  # only named: load_cli_config does not open sources


def _per_camera(section: str, key: str) -> bool:
    return section in PER_CAMERA_SECTIONS or key in PER_CAMERA_KEYS.get(section, ())


def _check_outcome(section: str, key: str, how: str, load: Any) -> None:
    try:
        config = load()
    except ConfigError as error:
        assert "\n" not in str(error), f"{how}: a multi-line message: {error}"
        return
    except Exception:  # noqa: BLE001 - anything else is the bug this test is for
        pytest.fail(f"{section}.{key} {how}: not a ConfigError:\n{traceback.format_exc()}")
    if config.sources:
        config = config.sources[0].config(config)
    value = getattr(getattr(config, section), key)
    meta = next(f.metadata for f in fields(SECTIONS[section]) if f.name == key)
    if isinstance(value, float):
        assert not math.isnan(value), f"{section}.{key} {how}: NaN accepted"
        assert meta["allow_inf"] or math.isfinite(value), f"{section}.{key} {how}: {value} accepted"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = meta["low"], meta["high"]
        assert low is None or value >= low, f"{section}.{key} {how}: {value} below {low}"
        assert high is None or value <= high or (meta["allow_inf"] and value == math.inf), f"{how}: {value} > {high}"
    hint = typing.get_type_hints(SECTIONS[section])[key]
    if hint in (int, float):
        assert isinstance(value, hint) and not isinstance(value, bool), f"{section}.{key} {how}: {value!r} accepted"


@pytest.mark.parametrize(("section", "key"), SETTINGS, ids=[f"{s}.{k}" for s, k in SETTINGS])
def test_every_setting_refuses_hostile_values_in_one_line(tmp_path: Path, section: str, key: str) -> None:
    empty = tmp_path / "empty.yaml"  # not the repo's config.yaml: its values are not what is tested here
    empty.write_text("")
    for i, text in enumerate(VALUES):
        _check_outcome(section, key, f"--set ={text}",
                       lambda text=text: load_cli_config(str(empty), [f"{section}.{key}={text}"], sources=[CLIP]))
        file = tmp_path / f"c{i}.yaml"
        file.write_text(f"{section}:\n  {key}: {text}\n", encoding="utf-8")
        _check_outcome(section, key, f"file {text}", lambda file=file: load_config(file))
        if _per_camera(section, key):
            _check_outcome(section, key, f"--set cam: {text}",
                           lambda text=text: load_cli_config(str(empty), [f"cam:{section}.{key}={text}"],
                                                             sources=[f"cam={CLIP}"]))
            cams = tmp_path / f"cams{i}.yaml"
            cams.write_text(f"sources:\n  - name: cam\n    url: {CLIP}\n    overrides:\n      {section}:\n"
                            f"        {key}: {text}\n", encoding="utf-8")
            _check_outcome(section, key, f"overrides {text}", lambda cams=cams: load_config(cams))


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


DEEP = 100_000


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a: " + "[" * DEEP + "]" * DEEP, r"nested more than \d+ levels"),  # PyYAML composes recursively
        ("[" * DEEP, r"nested more than \d+ levels"),
        ("{a: " * 30_000, r"nested more than \d+ levels"),
        ("".join(" " * i + f"k{i}:\n" for i in range(200)), r"nested more than \d+ levels"),
        ("detector:\n  max_faces: " + "9" * 5000, r"integer of 5000 digits"),  # int() refuses > 4300 digits
        ("detector:\n  interval: 1\n  interval: 2\n", r"key 'interval' is given twice .*line 3"),
        ("detector: {}\ntracker: {}\ndetector: {interval: 1}\n", r"key 'detector' is given twice"),
        ("a: &a [x, x]\nb: [*a, *a]\n", r"aliases are not allowed"),
        ("detector: !!python/object/apply:os.system ['true']\n", r"not valid YAML"),
        ("detector:\n  name: !!python/name:os.system\n", r"not valid YAML"),
        ("detector:\n  1: 2\n  name: x\n", r"unknown key detector\.1"),  # an int beside str keys
        (b"detector:\n  name: a\x00b\n", r"not valid YAML"),
        (b"\xc3\x28 invalid utf-8", r"not valid YAML"),
        ("- a\n- b\n", r"must be a mapping of sections"),
        ("42\n", r"must be a mapping of sections"),
        (f"sources:\n  - url: {CLIP}\n    overrides: {{1: {{}}, tracker: {{}}}}\n", r"unknown config section"),
        (f"sources:\n  - url: {CLIP}\n    overrides: {{nope: {{}}}}\n", r"unknown config section"),
        ('sources:\n  - url: "a\\0b.mp4"\n', None),  # accepted here; the CLI refuses the NUL (source_kind)
        ("models:\n  local_dirs: ['']\n", r"models\.local_dirs must not hold an empty string"),
        ("# " + "x" * (1 << 20), r"larger than 1 MiB"),
    ],
    ids=["deep-list", "deep-unclosed", "deep-flow-map", "deep-block", "huge-int", "duplicate-key",
         "duplicate-section", "aliases", "python-object", "python-name", "mixed-key-types", "nul", "invalid-utf8",
         "list", "scalar", "override-int-section", "override-unknown-section", "nul-in-url", "empty-local-dir",
         "over-1MiB"],
)
def test_hostile_config_files_are_one_line_errors(tmp_path: Path, text: str | bytes, match: str | None) -> None:
    path = _write(tmp_path, text)
    if match is None:
        load_config(path)
        return
    with pytest.raises(ConfigError, match=match) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["[" * DEEP, "{a: " * 30_000, "9" * 5000])
def test_hostile_set_values_are_one_line_errors(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"detector.interval={text}"])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_nesting_a_config_needs_is_allowed(tmp_path: Path) -> None:
    # The deepest real config: sources -> camera -> overrides -> section -> key (and a merge key beside).
    path = _write(tmp_path, f"sources:\n  - name: a\n    url: {CLIP}\n    overrides:\n      tracker:\n"
                            "        lost_track_buffer: 60\ndetector:\n  <<: {interval: 1}\n")
    config = load_config(path)
    assert config.detector.interval == 1 and MAX_YAML_DEPTH >= 8
    assert config.sources[0].config(config).tracker.lost_track_buffer == 60


def test_utf16_config_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "detector:\n  interval: 1\n".encode("utf-16"))).detector.interval == 1


def test_one_file_through_a_link_is_one_camera(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    (tmp_path / "link.mp4").symlink_to(clip)
    with pytest.raises(ConfigError, match=r"listed twice \(cameras 'a' and 'b'\)"):
        load_cli_config(None, [], sources=[f"a={clip}", f"b={tmp_path / 'link.mp4'}"])
    with pytest.raises(ConfigError, match=r"listed twice"):
        load_cli_config(None, [], sources=[f"a={clip}", f"b={tmp_path / '.' / 'clip.mp4'}"])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_an_unreadable_config_is_one_line() -> None:
    # A folder nobody may enter (pytest's tmp_path is under a root-only folder when run as root).
    scratch = Path(tempfile.mkdtemp(prefix="config-", dir="/tmp"))
    scratch.chmod(0o777)
    secret = scratch / "secret.yaml"
    secret.write_text("detector: {}\n")
    secret.chmod(0o000)  # as nobody (root reads anything: as_unprivileged drops to nobody first)

    def check(_: Path) -> None:
        with pytest.raises(ConfigError, match=r"cannot read config file .*Permission denied"):
            load_config(secret)

    try:
        as_unprivileged(check, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_defaults_pass_their_own_checks() -> None:
    assert isinstance(load_config(None), Config)


@pytest.mark.parametrize("text", ["9876543210", "[hunter2x]", "{pw: hunter2x}", "true", "'  hunter2x'", '"\\thunter2x"',
                                  "'   '", '"hunter\\nx2"'])
def test_a_bad_token_is_refused_without_showing_it(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^serve\.token ") as caught:
        load_config(None, [f"serve.token={text}"])
    message = str(caught.value)
    assert "hunter" not in message and "9876543210" not in message and "\n" not in message


def test_a_token_with_inner_spaces_is_a_token() -> None:
    assert load_config(None, ["serve.token='open sesame'"]).serve.token == "open sesame"
