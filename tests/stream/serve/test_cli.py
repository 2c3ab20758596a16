"""``python -m stream.serve`` and ``python -m stream --serve``: bad input is one line, Ctrl-C is clean."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.stream.serve.conftest import Client, wait_for
from tests.support.cli_util import child_env, error_line, free_port, run_cli


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.serve", *args], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "serve.port=70000"], "serve.port must be in [0, 65535]"),
    (["--set", "serve.workers=0"], "serve.workers must be in [1, 64]"),
    (["--host", ""], "serve.host must be a non-empty string"),
    (["--set", "annotate.privacy=mosaic"], "annotate.privacy must be one of none, blur, pixelate"),
    (["--port", "x"], "invalid int value"),
])
def test_bad_settings_are_one_line(args, message):
    result = run_serve(*args)
    assert result.returncode == 2
    assert message in error_line(result.stderr)


def test_missing_source_is_one_line(tmp_path):
    result = run_serve("--source", str(tmp_path / "missing.mp4"), "--set", "serve.workers=1")
    assert result.returncode == 2
    assert "missing.mp4" in error_line(result.stderr)


def test_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_serve("--port", str(taken.getsockname()[1]), "--set", "serve.workers=1")
    assert result.returncode == 2
    assert "cannot serve on 127.0.0.1" in error_line(result.stderr)


def test_bad_serve_address_of_the_cli_is_one_line(tmp_path):
    result = run_cli("--source", str(tmp_path), "--serve", "localhost:http")
    assert result.returncode == 2
    assert "--serve expects HOST:PORT" in error_line(result.stderr)


def test_ctrl_c_stops_the_server_cleanly_and_the_token_is_never_printed():
    port = free_port()
    token = "never-print-this-7b1e"
    process = subprocess.Popen([sys.executable, "-m", "stream.serve", "--port", str(port), "--set", "serve.workers=1",
                                "--log-level", "DEBUG"], cwd=REPO, env=child_env(FACE_STREAM_TOKEN=token),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = Client("127.0.0.1", port)

    def up() -> bool:
        try:
            return client.get("/healthz").status == 200
        except OSError:
            return False

    wait_for(up, 120)
    assert client.get("/api/info").status == 401  # the token from the environment is in force
    assert client.get("/api/info", Authorization=f"Bearer {token}").status == 200
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert "access token required" in stderr
    assert token not in stderr and token not in stdout
