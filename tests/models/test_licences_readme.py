"""The README's table of models and licences names every registry entry, with its commercial terms."""

from pathlib import Path

from models.registry import MODELS

REPO = Path(__file__).resolve().parents[2]


def _licence_rows() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Models and licences", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| role")]


def test_every_model_has_a_row_that_states_its_commercial_terms():
    rows = _licence_rows()
    for name, spec in MODELS.items():
        if spec.task == "detector_stage":  # MTCNN's R-Net and O-Net go with `mtcnn`'s row
            continue
        mine = [row for row in rows if f"`{name}`" in row]
        assert mine, f"README's models and licences table lacks {name} ({spec.licence})"
        licence_cells = [row.rstrip(" |").rsplit("|", 1)[1] for row in mine]
        restricted = any("non-commercial" in cell for cell in licence_cells)
        assert restricted == (not spec.commercial_use), (name, spec.licence, licence_cells)
