"""One run, in this process, with the web page beside it as ``python -m stream --serve`` has it (``serve_beside``)
and a summary output: the dashboard's counts over time, its charts and the summary agree to the person; and
every route the application has needs the token (enumerated from the application, so a new route is covered).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import shared_file
from tests.stream.serve.conftest import TOKEN, Client
from tests.support.cli_util import free_port

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, dict[str, Any]]]:
    """crowd_1080p.mp4 (several people) run to its end with 1 s windows; the page is still up when it is read."""
    import json

    from stream.config import load_cli_config
    from stream.pipeline import Pipeline, run
    from stream.serve.server import serve_beside
    from stream.sinks import SummarySink
    from stream.sources import open_source

    clip = shared_file("videos", "crowd_1080p.mp4")
    config = load_cli_config(None, ["output.counts_window_s=1", "serve.workers=1", f"serve.token={TOKEN}"],
                             sources=[str(clip)])
    camera = config.sources[0]
    config = camera.config(config)
    summary_path = tmp_path_factory.mktemp("counts") / "summary.json"
    port = free_port()
    with open_source(camera.url, options=config.source) as source, \
            serve_beside(f"127.0.0.1:{port}", config, source) as view:
        summary = SummarySink(summary_path, config.output)
        with summary:
            pipeline = Pipeline(config, camera=camera.name)
            run(pipeline, source, [summary, view])
        # The run is over (its last tracks ended and were counted), the page still serves.
        yield Client("127.0.0.1", port), json.loads(summary_path.read_text())


def _same_rows(web: list[dict[str, Any]], summary: list[dict[str, Any]]) -> None:
    """Equal rows, but for the arrival time's base: each output maps the file's time to the wall clock at its
    own first frame (stream.counts.FrameClock), a few ms apart."""
    assert len(web) == len(summary)
    for ours, theirs in zip(web, summary):
        assert {k: v for k, v in ours.items() if k != "window_start"} == \
               {k: v for k, v in theirs.items() if k != "window_start"}
        gap = datetime.fromisoformat(ours["window_start"]) - datetime.fromisoformat(theirs["window_start"])
        assert abs(gap.total_seconds()) <= 1.0


def test_dashboard_counts_are_the_summary_counts(served_run):
    client, summary = served_run
    data = client.get("/api/dashboard", **AUTH).json()
    counts = data["counts"]
    assert counts["window_s"] == summary["counts"]["window_s"] == 1.0
    assert summary["counts"]["totals"] and summary["counts"]["rows"]
    _same_rows(counts["rows"], summary["counts"]["rows"])
    _same_rows(counts["totals"], summary["counts"]["totals"])
    everyone = next(row for row in summary["counts"]["totals"] if row["camera"] == "all")
    assert everyone["people"] >= 3  # a crowd, not one face
    # The page's headline numbers and per-camera rows are those rows.
    assert {k: v for k, v in data["total"].items() if k != "window_start"} == \
           {k: v for k, v in everyone.items() if k != "window_start"}
    (camera,) = data["cameras"]
    mine = next(row for row in summary["counts"]["totals"] if row["camera"] == camera["counts_key"])
    assert camera["totals"]["people"] == mine["people"] and camera["totals"]["female"] == mine["female"]
    # A window of another width is the same rule over other windows.
    wide = client.get("/api/dashboard?window_s=3600", **AUTH).json()["counts"]
    assert wide["window_s"] == 3600 and sum(r["people"] for r in wide["rows"] if r["camera"] == "all") == \
        everyone["people"]


@pytest.mark.parametrize("chart", ["ages", "genders"])
@pytest.mark.parametrize("camera", ["all", "cam0"])
def test_charts_draw_the_counted_people(served_run, chart, camera):
    client, summary = served_run
    svg = client.get(f"/api/charts/{chart}.svg?camera={camera}", **AUTH)
    assert svg.status == 200
    root = ET.fromstring(svg.body)
    bars = [node for node in root.iter("{http://www.w3.org/2000/svg}rect") if node.get("class") == "bar"]
    drawn = sum(int(re.fullmatch(r".*: (\d+)", bar.find("{http://www.w3.org/2000/svg}title").text)[1])
                for bar in bars)
    everyone = next(row for row in summary["counts"]["totals"] if row["camera"] == "all")
    # Every counted person is in one stack of each chart (age groups + age? + no label yet; F + M + the rest).
    assert drawn == everyone["people"]
    # The axis is scaled to the tallest stack: its top tick is the stack's height rounded up (at most 4 steps).
    ticks = [int(node.text) for node in root.iter("{http://www.w3.org/2000/svg}text")
             if node.get("text-anchor") == "end" and node.text.isdigit()]
    tallest = max(row["people"] for row in summary["counts"]["rows"] if row["camera"] == "all")
    assert tallest <= max(ticks) < tallest + max(1, -(-tallest // 4))
    assert "per 1 s, by arrival" in svg.body.decode()


def test_every_route_but_health_needs_the_token(served_run):
    """Each route of the application, found by walking it: 401 without the token, served with it."""
    from stream.config import load_config
    from stream.serve.app import create_app
    from stream.serve.auth import OPEN_PATHS

    client, _ = served_run
    gate = create_app(load_config(overrides=["serve.workers=1", f"serve.token={TOKEN}"]))
    examples = {"name": "app.css", "camera_id": "cam0", "chart": "ages"}
    routes = [(route.path, sorted(route.methods)) for route in gate.app.routes if hasattr(route, "methods")]
    assert len(routes) >= 14
    assert frozenset({"/healthz"}) == OPEN_PATHS
    for path, methods in routes:
        url = re.sub(r"\{(\w+)\}", lambda m: examples[m[1]], path)
        for method in set(methods) - {"HEAD"}:
            body = b"" if method == "POST" else None
            refused = client.request(method, url, body)
            if path == "/healthz":
                assert refused.status == 200
                continue
            assert refused.status == 401, (method, path, refused.status)
            if url.endswith(".mjpg"):
                continue  # an endless stream: the refusal is what this test is about
            served = client.request(method, url, body, AUTH)
            assert served.status != 401, (method, path)
