"""Every command the README names answers --help (argparse help strings are format strings)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["stream", "stream.report", "stream.aggregate", "stream.serve",
            "bench", "bench.streams", "bench.detectors", "bench.runtime", "bench.latency", "bench.identity",
            "bench.soak", "bench.fragmented_mp4", "bench.evaluate_video", "models", "models.training.evaluate",
            "models.training.train", "export.mtcnn", "export.blazeface", "export.siglip", "export.dlib_face",
            "tests.mutation.run"]


def readme_commands() -> set[str]:
    """The modules the README runs with ``python -m`` (a ``python -m bench NAME`` counts as ``bench.NAME``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = set()
    for module, word in re.findall(r"python -m ([A-Za-z_][\w.]*)(?: ([a-z_]+))?", text):
        found.add(f"bench.{word}" if module == "bench" and word and (REPO / "bench" / f"{word}.py").exists()
                  else module)
    return found - {"pytest"}


def test_every_command_the_readme_names_is_checked():
    # A command added to the README without a --help check here fails, so the list cannot fall behind.
    assert readme_commands() <= set(COMMANDS), sorted(readme_commands() - set(COMMANDS))


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-500:]
    assert "usage:" in result.stdout and "Traceback" not in result.stderr
