"""Every command the README names answers --help (argparse help strings are format strings)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["stream", "stream.report", "stream.aggregate",
            "bench", "bench.streams", "bench.detectors", "bench.runtime", "bench.latency",
            "bench.evaluate_video", "models", "models.training.evaluate", "models.training.train", "export.mtcnn",
            "export.blazeface", "export.siglip"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-500:]
    assert "usage:" in result.stdout and "Traceback" not in result.stderr
