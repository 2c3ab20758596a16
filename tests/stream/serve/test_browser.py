"""The pages in a real browser: Debian's headless Chromium driven by Selenium, against real servers.

Screenshots are saved in the test's temporary folder, and copied to ``$SERVE_SCREENSHOTS_DIR`` when set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stream.serve.conftest import PHOTO, Client, serve, wait_for
from tests.stream.test_sources_rtsp import rtsp_ready, start_server  # noqa: F401 (fixtures: real RTSP servers)

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

# The MJPEG image's current frame, as the browser shows it, reduced to a short fingerprint.
FRAME_FINGERPRINT = """
const image = document.getElementById(arguments[0]);
if (!image || !image.naturalWidth) return null;
const canvas = document.createElement("canvas");
canvas.width = 64; canvas.height = 64;
const context = canvas.getContext("2d");
context.drawImage(image, 0, 0, 64, 64);
const data = context.getImageData(0, 0, 64, 64).data;
let sum = 0;
for (let i = 0; i < data.length; i += 1) sum = (sum * 31 + data[i]) % 1000000007;
return sum;
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screens")


# A face card's thumbnail against the same crop drawn from the annotated picture: (share of its pixels drawn,
# mean absolute difference per channel). 0 difference: the thumbnail is the annotated crop.
THUMB_VS_ANNOTATED = """
const canvas = document.querySelector('.face-card[data-face="' + arguments[0] + '"] canvas');
const [x1, y1, x2, y2] = arguments[1];
const side = Math.max(x2 - x1, y2 - y1) * 1.3, cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
const ref = document.createElement("canvas"); ref.width = 72; ref.height = 72;
ref.getContext("2d").drawImage(document.getElementById("annotated"), cx - side / 2, cy - side / 2, side, side,
                               0, 0, 72, 72);
const a = canvas.getContext("2d").getImageData(0, 0, 72, 72).data;
const b = ref.getContext("2d").getImageData(0, 0, 72, 72).data;
let drawn = 0, diff = 0;
for (let i = 0; i < a.length; i += 4) {
  if (a[i + 3]) drawn++;
  for (let k = 0; k < 3; k++) diff += Math.abs(a[i + k] - b[i + k]);
}
return [drawn / (a.length / 4), diff / (a.length / 4 * 3)];
"""


def thumbnails(driver: object, client: Client) -> list[tuple[float, float]]:
    """:data:`THUMB_VS_ANNOTATED` for every face of PHOTO (boxes from the API, as the page got them)."""
    faces = client.upload("/api/analyze", PHOTO.read_bytes()).json()["faces"]
    return [wait_for(lambda face=face: (found := driver.execute_script(  # type: ignore[attr-defined]
        THUMB_VS_ANNOTATED, face["id"], face["box"]))[0] == 1.0 and found, 30) for face in faces]


def screenshot(driver: object, folder: Path, name: str, height: int | None = None) -> Path:
    """Save the page (``height``: resize the window to show that much of it first)."""
    if height:
        driver.set_window_size(1400, height)  # type: ignore[attr-defined]
    path = folder / name
    assert driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    copy_to = os.environ.get("SERVE_SCREENSHOTS_DIR")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(copy_to) / name)
    driver.set_window_size(1400, 1000)  # type: ignore[attr-defined]
    return path


def texts(driver: object, css: str) -> list[str]:
    """The text of every element matching ``css``, read in one script: the pages rebuild their tables every
    second, so an element found a moment ago may be gone (stale) when asked for its text."""
    return driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll(arguments[0]), (node) => node.textContent)", css)


def _by(css: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def test_upload_a_photo_shows_every_face_with_its_chart(live_server: Client, browser, screens):
    driver = browser
    driver.get(live_server.base + "/")
    assert driver.title.startswith("Face stream")
    driver.find_element(*_by("#file")).send_keys(str(PHOTO))
    cards = wait_for(lambda: len(found := driver.find_elements(*_by(".face-card"))) == 6 and found, 60)
    for card in cards:
        label = card.find_element(*_by(".chip")).text
        assert label.startswith("#") and (" F " in label or " M " in label)
        chart = card.find_element(*_by("svg.chart"))
        assert chart.size["width"] > 200 and chart.size["height"] > 80  # drawn, not just present
        bars = chart.find_elements(*_by("rect.bar"))
        assert len(bars) == 8 and max(float(bar.get_attribute("height")) for bar in bars) > 20
    image = driver.find_element(*_by("#annotated"))
    assert driver.execute_script("return arguments[0].naturalWidth", image) == 1200
    models = driver.find_element(*_by("#model-info")).text
    info = live_server.get("/api/info").json()
    assert info["models"]["detector"]["name"] in models and info["models"]["detector"]["licence"] in models
    assert driver.find_element(*_by("#faces-title")).text == "6 faces"
    # Thumbnails come from the user's clean file, not the annotated picture (boxes and neighbours' labels).
    found = thumbnails(driver, live_server)
    assert all(diff > 2.0 for _, diff in found), found
    screenshot(driver, screens, "upload.png", height=1500)


def test_upload_of_a_wrong_file_says_why(live_server: Client, browser, tmp_path):
    driver = browser
    driver.get(live_server.base + "/")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a picture")
    driver.find_element(*_by("#file")).send_keys(str(text_file))
    status = wait_for(lambda: "unsupported file type" in (t := driver.find_element(*_by("#status")).text) and t, 30)
    assert "notes.txt" in status


def test_live_view_shows_moving_frames(live_server: Client, browser, screens):
    driver = browser
    driver.get(live_server.base + "/live")
    first = wait_for(lambda: driver.execute_script(FRAME_FINGERPRINT, "stream-cam0"), 30)
    wait_for(lambda: driver.execute_script(FRAME_FINGERPRINT, "stream-cam0") not in (None, first), 30)
    status = driver.find_element(*_by("#cam-cam0 .status"))
    wait_for(lambda: status.text == "live", 30)
    wait_for(lambda: "fps" in (t := driver.find_element(*_by("#cam-cam0 .stats")).text) and "–" not in t, 30)
    # Wait for a labelled person in the table, so the picture shows what a person would see.
    wait_for(lambda: any(" M " in text for text in texts(driver, "#cam-cam0 .chip")), 60)
    box = driver.execute_script("const b = document.querySelector('#cam-cam0 .table-scroll'); "
                                "return [b.scrollWidth, b.clientWidth]")
    assert box[0] <= box[1], box  # the people table fits beside the video on a desktop screen
    screenshot(driver, screens, "live.png")


def test_dashboard_shows_counts_charts_and_the_people_table(live_server: Client, browser, screens):
    driver = browser
    wait_for(lambda: live_server.get("/api/dashboard").json()["total"]["people"] >= 1, 60)
    driver.get(live_server.base + "/dashboard")
    total = wait_for(lambda: driver.find_elements(*_by("#kpi-total .v")), 30)[0]
    assert int(total.text) >= 1
    for chart in ("chart-ages", "chart-genders"):
        wait_for(lambda chart=chart: driver.execute_script(
            f"return document.getElementById('{chart}').naturalWidth"), 30)
    rows = wait_for(lambda: texts(driver, "#per-camera tbody tr"), 30)
    assert rows[-1].startswith("All cameras") and "talking_man_512.mp4" in rows[0]
    wait_for(lambda: driver.find_elements(*_by("#people tbody .chip")), 30)
    link = driver.find_element(*_by("#csv"))
    assert link.get_attribute("href").endswith("/api/people.csv")
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(*_by("#camera-filter"))).select_by_value("cam0")  # one camera's counts
    wait_for(lambda: "camera=cam0" in driver.find_element(*_by("#chart-ages")).get_attribute("src"), 10)
    wait_for(lambda: driver.execute_script("return document.getElementById('chart-ages').naturalWidth"), 30)
    screenshot(driver, screens, "dashboard.png", height=1300)


def test_upload_a_clip_lists_its_people(live_server: Client, browser, screens):
    from tests.stream.serve.conftest import CLIP

    driver = browser
    driver.get(live_server.base + "/")
    driver.find_element(*_by("#file")).send_keys(str(CLIP))
    rows = wait_for(lambda: driver.find_elements(*_by("#tracks tbody tr")), 120)
    assert any(row.text.split()[1] == "#1" and " M " in row.text for row in rows), [row.text for row in rows]
    assert "78 frames at 25 fps" in driver.find_element(*_by("#summary")).text
    wait_for(lambda: driver.execute_script("return document.getElementById('annotated').naturalWidth") == 512, 30)
    screenshot(driver, screens, "upload-clip.png")


def test_privacy_mode_in_the_browser(browser, screens):
    """The live view and an upload of a server with annotate.privacy=pixelate, as a person sees them."""
    from tests.stream.serve.conftest import CLIP

    driver = browser
    with serve("--source", str(CLIP), "--loop", "--set", "annotate.privacy=pixelate",
               "--set", "serve.workers=1") as client:
        driver.get(client.base + "/live")
        wait_for(lambda: driver.execute_script(FRAME_FINGERPRINT, "stream-cam0"), 30)
        badge = wait_for(lambda: driver.find_elements(*_by("#privacy-badge")), 30)[0]
        assert "pixelated" in badge.text
        wait_for(lambda: any(" M " in text for text in texts(driver, "#cam-cam0 .chip")), 60)
        screenshot(driver, screens, "live-privacy.png")
        driver.get(client.base + "/")
        driver.find_element(*_by("#file")).send_keys(str(PHOTO))
        wait_for(lambda: len(driver.find_elements(*_by(".face-card"))) == 6, 60)
        # In privacy mode the thumbnails are the obscured faces of the annotated picture, never the file's own.
        assert all(diff < 0.5 for _, diff in thumbnails(driver, client))
        screenshot(driver, screens, "upload-privacy.png")


def test_pages_fit_a_phone(live_server: Client, browser, screens):
    """At 400 px wide nothing runs off the page: wide tables scroll inside their card, the header wraps."""
    driver = browser
    driver.set_window_size(400, 900)
    try:
        pages = (("/", "phone-upload.png"), ("/live", "phone-live.png"), ("/dashboard", "phone-dashboard.png"))
        for page, name in pages:
            driver.get(live_server.base + page)
            if page == "/":
                driver.find_element(*_by("#file")).send_keys(str(PHOTO))
                wait_for(lambda: len(driver.find_elements(*_by(".face-card"))) == 6, 60)
            else:
                wait_for(lambda: driver.find_elements(*_by(".card")), 30)
                wait_for(lambda: driver.execute_script("return document.querySelectorAll('tbody tr').length"), 30)
            if page == "/live":
                wait_for(lambda: driver.execute_script(FRAME_FINGERPRINT, "stream-cam0"), 30)
            path = screens / name
            assert driver.save_screenshot(str(path))
            copy_to = os.environ.get("SERVE_SCREENSHOTS_DIR")
            if copy_to:
                shutil.copy(path, Path(copy_to) / name)
            width = driver.execute_script("return document.documentElement.scrollWidth")
            viewport = driver.execute_script("return window.innerWidth")
            assert width <= viewport, (page, width, viewport)
            if page == "/live":  # the camera's card itself fits too (no sideways scrolling of the video)
                card = driver.execute_script("const c = document.getElementById('cam-cam0'); "
                                             "return [c.scrollWidth, c.clientWidth]")
                assert card[0] <= card[1], card
    finally:
        driver.set_window_size(1400, 1000)


def test_a_non_commercial_model_is_flagged_on_the_page(browser, screens):
    """With InsightFace's SCRFD (non-commercial research use only) as the detector, the page says so, in red."""
    local = os.environ.get("STREAM_LOCAL_MODELS", "")
    if not local or not any(Path(folder, "scrfd_500m.onnx").exists() for folder in local.split(os.pathsep)):
        pytest.skip("scrfd_500m.onnx is not in STREAM_LOCAL_MODELS")
    driver = browser
    with serve("--detector", "scrfd_500m", "--set", "serve.workers=1", env={"STREAM_LOCAL_MODELS": local}) as client:
        models = client.get("/api/info").json()["models"]
        assert models["detector"]["name"] == "scrfd_500m" and models["detector"]["commercial_use"] is False
        driver.get(client.base + "/")
        driver.find_element(*_by("#file")).send_keys(str(PHOTO))
        wait_for(lambda: len(driver.find_elements(*_by(".face-card"))) == 6, 60)
        flagged = wait_for(lambda: driver.find_elements(*_by("#model-info .nc")), 30)
        assert len(flagged) == 1 and "NON-COMMERCIAL" in flagged[0].text
        assert flagged[0].value_of_css_property("color") == "rgba(201, 42, 42, 1)"  # the page's warning red
        assert "NON-COMMERCIAL" not in driver.find_element(*_by("#model-info")).text.replace(flagged[0].text, "")
        driver.execute_script("document.getElementById('model-info').scrollIntoView()")
        screenshot(driver, screens, "upload-noncommercial.png")


def test_two_cameras_live_and_on_the_dashboard(browser, screens, start_server):  # noqa: F811
    """``python -m stream --source door=RTSP --source till=RTSP --serve``: both videos play side by side on the
    live view; the dashboard has a row per camera and the total, and its filter offers each camera."""
    from selenium.webdriver.support.ui import Select

    door, till = start_server(), start_server()
    driver = browser
    with serve("--source", f"door={door.url()}", "--source", f"till={till.url()}", "--set", "serve.workers=1",
               beside_run=True) as client:
        driver.get(client.base + "/live")
        for camera in ("cam0", "cam1"):
            first = wait_for(lambda camera=camera: driver.execute_script(FRAME_FINGERPRINT, f"stream-{camera}"), 60)
            wait_for(lambda camera=camera, first=first: driver.execute_script(
                FRAME_FINGERPRINT, f"stream-{camera}") not in (None, first), 30)
            wait_for(lambda camera=camera: driver.find_element(*_by(f"#cam-{camera} .status")).text == "live", 30)
        names = [h.text for h in driver.find_elements(*_by(".cam h2"))]
        assert names[0].startswith("door") and names[1].startswith("till"), names
        # Both women labelled in the table, as on the video (the table refreshes every second).
        wait_for(lambda: sum(" F " in text for text in texts(driver, ".cam tbody .chip")) >= 2, 60)
        screenshot(driver, screens, "live-two-cameras.png", height=1500)
        driver.get(client.base + "/dashboard")
        rows = wait_for(lambda: len(found := texts(driver, "#per-camera tbody tr")) == 3 and found, 30)
        assert [row.split()[0] for row in rows] == ["door", "till", "All"]
        options = [o.get_attribute("value") for o in driver.find_elements(*_by("#camera-filter option"))]
        assert options == ["all", "cam0", "cam1"]
        people = wait_for(lambda: driver.find_elements(*_by("#people tbody .chip")), 30)
        assert len(people) >= 2
        Select(driver.find_element(*_by("#camera-filter"))).select_by_value("cam1")
        wait_for(lambda: "camera=cam1" in driver.find_element(*_by("#chart-ages")).get_attribute("src"), 10)
        wait_for(lambda: driver.execute_script("return document.getElementById('chart-ages').naturalWidth"), 30)
        screenshot(driver, screens, "dashboard-two-cameras.png", height=1300)


def test_uncertain_labels_read_sensibly(live_server: Client, browser, screens, tmp_path):
    """Frames of a crowd give every kind of label the overlay has (stream.labels): a range of two groups, age?,
    an undecided gender ?(F50%), estimating...; each card says it in words and its chart highlights what is shown."""
    import re

    import cv2

    from tests.conftest import shared_file

    capture = cv2.VideoCapture(str(shared_file("videos", "crowd_1080p.mp4")))
    driver = browser
    seen: dict[str, str] = {}
    try:
        for index in (20, 40):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, image = capture.read()
            assert ok
            path = tmp_path / f"crowd_{index}.jpg"
            cv2.imwrite(str(path), image)
            driver.get(live_server.base + "/")
            driver.find_element(*_by("#file")).send_keys(str(path))
            wait_for(lambda path=path: driver.find_element(*_by("#status")).text == f"{path.name} analysed.", 60)
            for card in driver.find_elements(*_by(".face-card")):
                text = card.find_element(*_by(".chip")).text
                facts = dict(zip([n.text for n in card.find_elements(*_by("dt"))],
                                 [n.text for n in card.find_elements(*_by("dd"))]))
                bars = card.find_elements(*_by("rect.bar"))
                solid = [b for b in bars if b.get_attribute("fill-opacity") == "1"]
                chip_class = card.find_element(*_by(".chip")).get_attribute("class")
                if text.endswith("estimating..."):
                    assert facts["Age group"] == "–" and facts["Gender"] == "–" and not bars
                    assert "too small or unsure to classify" in card.text
                    seen["estimating"] = text
                    continue
                if "?(F" in text:  # the gender undecided: grey, said in words, P(female) near one half
                    assert "unknown" in chip_class and facts["Gender"] == "undecided"
                    assert 0.3 <= float(facts["P(female)"]) <= 0.7
                    seen["gender undecided"] = text
                if text.endswith("age?"):  # no one age: said in words, no years, no group highlighted
                    assert facts["Age group"] == "undecided" and facts["Age"] == "–"
                    assert len(bars) == 8 and len(solid) == 8
                    seen["age?"] = text
                    continue
                shown = re.search(r" (\d\d-\d\d|\d\d\+) ", text)[1]
                assert facts["Age group"] == shown
                groups = [b.find_element(*_by("title")).get_attribute("textContent").split(":")[0] for b in solid]
                if shown not in groups:  # a range of two groups: both highlighted
                    assert len(solid) == 2 and groups[0].split("-")[0] == shown.split("-")[0], (text, groups)
                    seen["range"] = text
                else:
                    assert len(solid) == 1
            if index == 20:
                driver.execute_script("document.querySelector('.face-card').scrollIntoView()")
                screenshot(driver, screens, "upload-uncertain-labels.png", height=1300)
    finally:
        capture.release()
    assert set(seen) == {"estimating", "gender undecided", "age?", "range"}, seen
