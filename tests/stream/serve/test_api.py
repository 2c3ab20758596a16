"""The JSON API on a real server: analysis, limits, OpenAPI, cameras, MJPEG, dashboard, CSV, paths."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.stream.serve.conftest import CLIP, PHOTO, wait_for
from tests.support.cli_util import run_cli

AGE_GROUP_COUNT = 8


def _check_face(face: dict) -> None:
    assert len(face["box"]) == 4 and face["box"][0] < face["box"][2] and face["box"][1] < face["box"][3]
    assert face["classified"] is True
    probs = face["age_group_probs"]
    assert len(probs) == AGE_GROUP_COUNT and abs(sum(probs) - 1.0) < 0.01
    assert face["age_group"] in face["text"] and face["age"] > 0
    assert face["gender"] in ("female", "male")
    assert (face["p_female"] >= 0.5) == (face["gender"] == "female")


def test_health_and_pages(live_server):
    assert live_server.get("/healthz").json() == {"status": "ok"}
    for path, marker in (("/", b"Try a photo"), ("/live", b"Live view"), ("/dashboard", b"Dashboard")):
        reply = live_server.get(path)
        assert reply.status == 200 and marker in reply.body
        assert reply.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in reply.headers["content-security-policy"]
        assert b"http://" not in reply.body and b"https://" not in reply.body  # every asset from this server
    assert live_server.get("/static/app.css").status == 200
    assert live_server.get("/docs").status == 404  # Swagger UI loads from a CDN: off


def test_analyze_photo_matches_the_cli(live_server, tmp_path):
    reply = live_server.upload("/api/analyze", PHOTO.read_bytes())
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["kind"] == "image" and answer["format"] == "JPEG"
    assert len(answer["faces"]) == 6
    for face in answer["faces"]:
        _check_face(face)
        assert "chart_svg" not in face and "annotated_jpeg" not in answer
    models = answer["models"]
    assert models["detector"]["name"] and models["detector"]["licence"]
    assert {m["task"] for m in models["classifiers"]} >= {"age", "gender"}
    assert all(m["licence"] and m["provenance"] for m in models["classifiers"])
    # The same photo through the CLI: the same faces with the same labels (one pipeline, two clients).
    events = tmp_path / "events.jsonl"
    result = run_cli("--source", str(PHOTO), "--events", str(events))
    assert result.returncode == 0, result.stderr
    cli_faces = json.loads(events.read_text().splitlines()[0])["faces"]
    assert [(f["box_xyxy"], f["age_group"], f["gender"]) for f in cli_faces] == \
        [(f["box"], f["age_group"], f["gender"]) for f in answer["faces"]]


def test_analyze_raw_body_equals_multipart(live_server):
    data = PHOTO.read_bytes()
    raw = live_server.request("POST", "/api/analyze", data, {"Content-Type": "image/jpeg"})
    form = live_server.upload("/api/analyze", data)
    assert raw.status == form.status == 200
    assert raw.json()["faces"] == form.json()["faces"]


def test_annotated_image_and_charts(live_server):
    answer = live_server.upload("/api/analyze?annotated=true&charts=true", PHOTO.read_bytes()).json()
    import base64

    image = cv2.imdecode(np.frombuffer(base64.b64decode(answer["annotated_jpeg"]), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (answer["height"], answer["width"])
    for face in answer["faces"]:
        svg = ET.fromstring(face["chart_svg"])
        bars = [node for node in svg.iter("{http://www.w3.org/2000/svg}rect") if node.get("class") == "bar"]
        assert len(bars) == AGE_GROUP_COUNT


def test_large_image_is_downscaled_like_the_cli(live_server):
    photo = cv2.imread(str(PHOTO))
    big = cv2.resize(photo, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)  # 3000 x 1575
    ok, png = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok and len(png) < 4 * 2**20  # under this server's 4 MB limit
    answer = live_server.request("POST", "/api/analyze", png.tobytes(), {"Content-Type": "image/jpeg"}).json()
    assert answer["original_size"] == [big.shape[1], big.shape[0]]
    assert answer["height"] == 1080 and answer["width"] == round(big.shape[1] * 1080 / big.shape[0])
    assert len(answer["faces"]) == 6


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    (b"x" * (5 * 2**20), {"Content-Type": "image/jpeg"}, 413, "max_upload_mb"),
    (b"hello, this is not a picture", {"Content-Type": "text/plain"}, 415, "unsupported file type"),
    (b"%PDF-1.7 not an image", {"Content-Type": "image/jpeg"}, 415, "unsupported file type"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 100, {"Content-Type": "image/jpeg"}, 400, "cannot decode"),
    (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100, {"Content-Type": "video/mp4"}, 400, "cannot decode"),
    (b"", {"Content-Type": "image/jpeg"}, 400, "empty upload"),
    (b"--xyz\r\nbroken", {"Content-Type": "multipart/form-data; boundary=xyz"}, 400, "'file'"),
])
def test_upload_limits(live_server, body, headers, status, message):
    reply = live_server.request("POST", "/api/analyze", body, headers)
    assert reply.status == status, reply.body
    assert message in reply.json()["detail"]


def test_upload_in_the_wrong_field_and_chunked_too_large(live_server):
    reply = live_server.upload("/api/analyze", PHOTO.read_bytes(), field="image")
    assert reply.status == 400 and "no form field 'file'" in reply.json()["detail"]
    import http.client

    # Chunked (no Content-Length): the limit holds while the body arrives.
    connection = http.client.HTTPConnection(live_server.host, live_server.port, timeout=60)
    connection.request("POST", "/api/analyze", body=iter([b"\xff\xd8\xff" + b"0" * 3 * 2**20, b"0" * 2 * 2**20]),
                       headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    connection.close()


def test_clip_upload_gives_per_person_labels(live_server):
    reply = live_server.request("POST", "/api/analyze", CLIP.read_bytes(), {"Content-Type": "video/mp4"})
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["kind"] == "video" and answer["frames"] == 78 and answer["fps"] == 25.0
    labelled = [t for t in answer["tracks"] if t["age_group"] is not None]
    assert labelled and {t["gender"] for t in labelled} == {"male"}
    for track in labelled:  # the overlay's text, from stream.labels
        assert track["text"].startswith(f"#{track['track_id']} M {track['age_group']} {track['age']:.0f}y ")
    assert answer["totals"]["tracks"] == len(answer["tracks"])


def test_openapi_documents_the_api(live_server):
    schema = live_server.get("/openapi.json").json()
    analyze = schema["paths"]["/api/analyze"]["post"]
    content = analyze["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert "image/jpeg" in content and "video/mp4" in content
    assert {"400", "413", "415"} <= set(analyze["responses"])
    # Both request forms: the multipart field and the raw body of each accepted type.
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert all(content[media]["schema"]["format"] == "binary" for media in ("image/jpeg", "image/png",
                                                                            "application/octet-stream"))
    # The answer's schema: a photo's faces or a clip's tracks.
    answer = analyze["responses"]["200"]["content"]["application/json"]["schema"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in answer["anyOf"]} == {"ImageAnalysis", "ClipAnalysis"}
    schemas = schema["components"]["schemas"]
    for name in ("ImageAnalysis", "ClipAnalysis", "FaceResult"):
        assert name in schemas
    face = set(schemas["FaceResult"]["properties"])
    assert {"box", "age_group_probs", "age", "gender", "p_female", "age_range"} <= face
    assert {"detector", "classifiers"} <= set(schemas["Models"]["properties"])
    assert "licence" in schemas["ModelInfo"]["properties"]
    assert {"/healthz", "/api/cameras", "/api/dashboard", "/api/people.csv"} <= set(schema["paths"])


def test_camera_status_and_mjpeg(live_server):
    camera = wait_for(lambda: [c for c in live_server.get("/api/cameras").json() if c["fps"]])[0]
    assert camera["id"] == "cam0" and camera["name"].endswith("talking_man_512.mp4")
    assert camera["status"] == "live" and camera["fps"] > 0
    frames = live_server.mjpeg_frames("cam0", 5)
    assert len(frames) == 5
    images = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for _, jpeg in frames]
    assert all(image is not None and image.shape == (512, 512, 3) for image in images)
    assert len({jpeg for _, jpeg in frames}) == 5  # new frames, not the same one again
    still = live_server.get("/api/cameras/cam0/frame.jpg")
    assert still.status == 200 and still.headers["content-type"] == "image/jpeg"
    assert live_server.get("/api/cameras/cam9/stream.mjpg").status == 404


def test_dashboard_counts_and_csv(live_server):
    # The clip loops every 3 s; its person is counted each time the pass ends.
    data = wait_for(lambda: (d := live_server.get("/api/dashboard").json())["total"]["people"] >= 1 and d)
    total = data["total"]
    assert total["camera"] == "all" and total["male"] >= 1 and total["age_31-40"] >= 1
    # The counts over time of output.counts_window_s (60 s by default), as in the summary: they add up to the total.
    counts = data["counts"]
    assert counts["window_s"] == 60.0
    assert sum(row["people"] for row in counts["rows"] if row["camera"] == "all") >= total["people"]
    assert data["cameras"][0]["totals"]["people"] >= 1
    # Each pass of the looping clip (a fresh tracker: ids from 1 again) is a new person, not the last pass's #1.
    wait_for(lambda: live_server.get("/api/dashboard").json()["total"]["people"] >= 2)
    # ... arriving when its pass began (3 s apart), not dated back to the first pass's media time.
    seconds = live_server.get("/api/dashboard?window_s=1").json()["counts"]["rows"]
    assert len({row["window_start"] for row in seconds if row["camera"] == "all"}) >= 2
    people = wait_for(lambda: live_server.get("/api/dashboard").json()["people"])
    assert people[0]["camera"].endswith("talking_man_512.mp4") and people[0]["label"].startswith("#")
    reply = live_server.get("/api/people.csv")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(reply.body.decode())))
    assert rows[0] == data["people_columns"]
    for chart in ("ages", "genders"):
        svg = live_server.get(f"/api/charts/{chart}.svg")
        assert svg.headers["content-type"] == "image/svg+xml"
        root = ET.fromstring(svg.body)  # well-formed, so browsers draw it
        assert [n for n in root.iter("{http://www.w3.org/2000/svg}rect") if n.get("class") == "bar"]


def test_uploads_do_not_block_the_live_view(live_server):
    """Eight uploads at once (two workers) while the MJPEG stream is read: frames keep coming."""
    data = PHOTO.read_bytes()
    window: dict[str, float] = {}
    statuses: list[int] = []

    def upload() -> None:
        statuses.append(live_server.upload("/api/analyze", data).status)

    frames: list[tuple[float, bytes]] = []
    done = threading.Event()
    reader = threading.Thread(target=live_server.mjpeg_frames, args=("cam0", 10**6), daemon=True,
                              kwargs={"timeout": 30, "into": frames, "stop": done})
    reader.start()
    wait_for(lambda: len(frames) >= 2 or None, 30)
    threads = [threading.Thread(target=upload) for _ in range(8)]
    window["start"] = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window["end"] = time.monotonic()
    done.set()
    reader.join(timeout=30)
    during = [t for t, _ in frames if window["start"] <= t <= window["end"]]
    assert statuses == [200] * 8
    length = window["end"] - window["start"]
    print(f"8 uploads took {length:.1f} s; {len(during)} live frames arrived meanwhile")
    # The live view kept flowing: no gap between frames around the uploads as long as half of them (a view the
    # uploads blocked would show one gap as long as all of them), and never one over a second on a short window.
    around = [t for t, _ in frames if window["start"] - 1.0 <= t <= window["end"] + 1.0]
    gaps = np.diff(around) if len(around) > 1 else np.array([length + 1.0])
    assert during and float(gaps.max()) < max(1.0, length / 2), (length, gaps.max())


@pytest.mark.parametrize("path", [
    "/static/../../config.yaml", "/static/..%2F..%2Fconfig.yaml", "/static/%2e%2e/%2e%2e/config.yaml",
    "/api/cameras/..%2F..%2Fconfig.yaml/frame.jpg", "/static/app.css/../../../../etc/passwd",
    "/static//etc/passwd", "/static/%2Fetc%2Fpasswd", "//etc/passwd", "/static/%2e%2e%2f%2e%2e%2fREADME.md",
    "/api/cameras/%2Fetc%2Fpasswd/frame.jpg", "/static/..%5C..%5Cconfig.yaml",
])
def test_no_request_path_reaches_the_filesystem(live_server, path):
    reply = live_server.get(path)
    assert reply.status == 404
    assert b"serve:" not in reply.body and b"root:" not in reply.body


def test_listens_on_loopback_by_default(live_server):
    from stream.config import load_config

    assert load_config().serve.host == "127.0.0.1"
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if int(port, 16) == live_server.port and state == "0A":  # LISTEN
            listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, not 0.0.0.0


def test_faces_too_small_to_classify_are_listed_without_a_label(live_server):
    photo = cv2.imread(str(PHOTO))
    small = cv2.resize(photo, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)  # faces of ~25 px
    ok, jpeg = cv2.imencode(".jpg", small)
    answer = live_server.request("POST", "/api/analyze", jpeg.tobytes(), {"Content-Type": "image/jpeg"}).json()
    unclassified = [face for face in answer["faces"] if not face["classified"]]
    assert unclassified, answer["faces"]
    for face in unclassified:  # every key present, the label's values null (JSON has no NaN)
        assert face["age_group"] is None and face["age_group_probs"] is None and face["p_female"] is None
        assert face["text"] == f"#{face['id']} estimating..."
