"""The web application: upload page, live view, dashboard and their JSON API (FastAPI).

Routes (OpenAPI schema at ``/openapi.json``; the Swagger page is off because it loads from a CDN):

* ``/`` upload page, ``/live`` live view, ``/dashboard`` dashboard, ``/static/NAME`` their assets;
* ``POST /api/analyze`` a photo or clip (multipart field ``file`` or the raw body) → faces or tracks;
* ``GET /api/info`` models, licences, privacy mode and limits; ``/api/cameras``; ``/api/dashboard``;
* ``/api/cameras/{id}/stream.mjpg`` (MJPEG) and ``/frame.jpg``; ``/api/charts/{ages,genders}.svg``;
  ``/api/people.csv``; ``/healthz`` (open even with a token); ``/login?token=``.

Assets are read from the package once at start and served from memory by name, so no part of a request
is ever used as a path. Uploads are analysed on :class:`~stream.serve.analyze.Analyzer`'s own thread pool,
so the event loop (and with it the live view) keeps serving while they run.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from stream.config import Config
from stream.counts import ALL_CAMERAS
from stream.labels import span_of
from stream.serve.analyze import Analyzer
from stream.serve.auth import TokenGate
from stream.serve.charts import AGE_COLOURS, GENDER_COLOURS, age_bars, stacked_timeline
from stream.serve.live import PEOPLE_COLUMNS, CameraView, Hub
from stream.serve.uploads import ACCEPTED, UploadError, read_upload
from stream.types import AGE_GROUPS

_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
PAGES = {"/": "index.html", "/live": "live.html", "/dashboard": "dashboard.html"}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of ``stream/serve/static`` by name, with its media type (read once, served from memory)."""
    assets = {}
    for item in resources.files("stream.serve").joinpath("static").iterdir():
        suffix = item.name[item.name.rfind("."):]
        if item.is_file() and suffix in _TYPES:
            assets[item.name] = (item.read_bytes(), _TYPES[suffix])
    return assets


# -- OpenAPI documentation of the answers -----------------------------------------------------------
class ModelInfo(BaseModel):
    name: str
    task: str
    licence: str = Field(description="licence; [NON-COMMERCIAL] marks models not licensed for commercial use")
    commercial_use: bool
    provenance: str


class Models(BaseModel):
    detector: ModelInfo
    classifiers: list[ModelInfo]


class FaceResult(BaseModel):
    id: int = Field(description="1..n in detector-score order")
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the analysed image")
    score: float = Field(description="detector confidence")
    classified: bool = Field(description="false when the face is too small or unsure to classify")
    text: str = Field(description="the overlay's label text")
    age_group: str | None = Field(description="the age group shown; null while undecided")
    age_range: str | None = Field(description="the age shown: the group, two neighbouring groups as one range "
                                  "(21-40) when too close to call, null when undecided")
    age_group_probs: list[float] | None = Field(description="8 probabilities in age_groups order")
    confidence: float | None = Field(description="probability of the shown age group")
    age: float | None = Field(description="years")
    gender: str | None = Field(description="female or male")
    p_female: float | None
    n_obs: int | None
    chart_svg: str | None = Field(None, description="the age-group bar chart (with ?charts=true)")


class ImageAnalysis(BaseModel):
    kind: str = Field(description="image")
    format: str
    width: int = Field(description="size analysed (after downscaling to source.max_image_height)")
    height: int
    original_size: list[int]
    age_groups: list[str]
    faces: list[FaceResult]
    models: Models
    annotated_jpeg: str | None = Field(None, description="base64 JPEG of the annotated image (?annotated=true)")


class TrackResult(BaseModel):
    track_id: int
    text: str = Field(description="the overlay's label text (the label the person ended with)")
    first_frame: int
    last_frame: int
    duration_s: float | None
    n_obs: int
    age_group: str | None
    age_range: str | None
    age_group_probs: list[float] | None
    age: float | None
    gender: str | None
    p_female: float | None


class ClipAnalysis(BaseModel):
    kind: str = Field(description="video")
    format: str
    frames: int
    fps: float
    duration_s: float
    age_groups: list[str]
    tracks: list[TrackResult] = Field(description="one per person (track), with the label it ended with")
    totals: dict[str, Any]
    models: Models
    annotated_jpeg: str | None = Field(None, description="base64 JPEG of the frame with the most labelled faces")


_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        **{media: {"schema": {"type": "string", "format": "binary"}}
           for media in ("image/jpeg", "image/png", "image/webp", "image/bmp", "video/mp4",
                         "application/octet-stream")},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "empty, malformed or undecodable upload"},
    401: {"description": "the access token is missing or wrong (when serve.token is set)"},
    413: {"description": "larger than serve.max_upload_mb, or a clip longer than serve.max_clip_s"},
    415: {"description": f"not one of: {ACCEPTED}"},
}


def create_app(config: Config, hub: Hub | None = None, analyzer: Analyzer | None = None) -> Any:
    """The ASGI application: the FastAPI routes behind the token gate.

    Args:
        config: The run's configuration (its ``serve:`` section sets the limits and the token).
        hub: The cameras to show (none: upload only).
        analyzer: The upload workers; built from ``config`` when not given.
    """
    settings = config.serve
    hub = hub or Hub()
    analyzer = analyzer or Analyzer(config, workers=settings.workers, max_clip_s=settings.max_clip_s,
                                    jpeg_quality=settings.jpeg_quality)
    executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="upload")
    max_bytes = int(settings.max_upload_mb * 2**20)
    assets = load_assets()
    app = FastAPI(title="Face stream", version="1", docs_url=None, redoc_url=None,
                  description="Face detection, tracking, age group and gender: uploads, live cameras, counts.")
    app.state.hub, app.state.analyzer = hub, analyzer

    def page(name: str) -> Response:
        body, media = assets[name]
        return Response(body, media_type=media, headers={"cache-control": "no-cache"})

    for route, name in PAGES.items():
        app.add_api_route(route, lambda name=name: page(name), methods=["GET"], include_in_schema=False)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in assets:  # looked up, never joined to a path
            raise HTTPException(404, "no such asset")
        return page(name)

    @app.get("/healthz", summary="Liveness check (never needs the token)")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", include_in_schema=False)
    def login() -> Response:
        return Response(status_code=303, headers={"location": "/"})  # the gate signs in; no token set: go home

    @app.post("/api/analyze", summary="Faces, age groups and gender in a photo, or per person in a short clip",
              response_model=ImageAnalysis | ClipAnalysis, response_model_exclude_unset=True,
              responses=_ERRORS, openapi_extra={"requestBody": _UPLOAD_BODY})
    async def analyze(request: Request,
                      annotated: bool = Query(False, description="include the annotated image as base64 JPEG"),
                      charts: bool = Query(False, description="include each face's age-group chart as SVG"),
                      ) -> Any:
        try:
            upload = await read_upload(request.headers.get("content-type", ""),
                                       request.headers.get("content-length"), request.stream(), max_bytes)
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(executor, lambda: analyzer.analyze(upload, annotated=annotated))
        except UploadError as error:
            return JSONResponse({"detail": error.message}, status_code=error.status)
        if charts and answer["kind"] == "image":
            for face in answer["faces"]:
                if face["age_group_probs"] is not None:
                    colour = GENDER_COLOURS.get(face["gender"] or "unknown", GENDER_COLOURS["unknown"])
                    # The groups of the shown age ("31-55": two), read as the labels read their own text.
                    span = None
                    if face["age_range"] is not None:
                        first, last = span_of(face["age_range"])
                        span = range(first, last + 1)
                    face["chart_svg"] = age_bars(face["age_group_probs"], colour, highlight=span,
                                                 title=f"face {face['id']} age groups")
        return answer

    @app.get("/api/info", summary="Models and licences, privacy mode, upload limits, cameras")
    def info() -> dict[str, Any]:
        return {"models": analyzer.models, "privacy": config.annotate.privacy,
                "max_upload_mb": settings.max_upload_mb, "max_clip_s": settings.max_clip_s,
                "uploads": "kept in memory only, never written to disk; discarded after the answer",
                "accepted": ACCEPTED, "age_groups": list(AGE_GROUPS),
                "cameras": [{"id": c.camera_id, "name": c.name} for c in hub.cameras()]}

    @app.get("/api/cameras", summary="Each camera's status, fps, faces in view and people")
    def cameras() -> list[dict[str, Any]]:
        return [camera.snapshot() for camera in hub.cameras()]

    def camera_or_404(camera_id: str) -> CameraView:
        camera = hub.get(camera_id)
        if camera is None:
            raise HTTPException(404, f"no camera {camera_id!r}; GET /api/cameras lists them")
        return camera

    @app.get("/api/cameras/{camera_id}/frame.jpg", summary="The camera's newest annotated frame",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, 404: {}})
    def frame(camera_id: str) -> Response:
        _, jpeg = camera_or_404(camera_id).latest()
        if jpeg is None:
            raise HTTPException(404, "no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "no-store"})

    @app.get("/api/cameras/{camera_id}/stream.mjpg", summary="The camera's annotated video (MJPEG)",
             response_class=StreamingResponse, responses={200: {"content": {"multipart/x-mixed-replace": {}}}})
    def stream(camera_id: str) -> StreamingResponse:
        camera = camera_or_404(camera_id)
        interval = 1.0 / settings.mjpeg_fps

        async def parts() -> Any:
            sent = -1
            while True:
                version, jpeg = camera.latest()
                if jpeg is not None and version != sent:
                    sent = version
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                           + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                elif camera.finished:
                    return  # the browser keeps showing the last frame
                await asyncio.sleep(interval)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    def people_rows(camera_id: str) -> list[dict[str, Any]]:
        chosen = [camera_or_404(camera_id)] if camera_id != "all" else hub.cameras()
        return [row for camera in chosen for row in camera.snapshot()["people"]]

    @app.get("/api/dashboard", summary="Counts per camera and in total, counts over time, people in view")
    def dashboard(window_s: float = Query(0, ge=0, le=86400, description="window of the counts over time; "
                                          "0: output.counts_window_s, as the summary and --counts")) -> Any:
        snapshots = [camera.snapshot() for camera in hub.cameras()]
        counts = hub.counts.table(window_s or None)
        return {"cameras": snapshots, "total": hub.counts.totals_of(ALL_CAMERAS), "counts": counts,
                "people_columns": list(PEOPLE_COLUMNS), "people": [row for snap in snapshots for row in snap["people"]],
                "privacy": config.annotate.privacy}

    @app.get("/api/charts/{chart}.svg", summary="Counts over time as SVG: by age group (ages) or by gender",
             response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}})
    def chart(chart: str, camera: str = "all", window_s: float = Query(0, ge=0, le=86400)) -> Response:
        if chart not in ("ages", "genders"):
            raise HTTPException(404, "charts: ages, genders")
        key, where = ALL_CAMERAS, "all cameras"
        if camera != "all":
            view = camera_or_404(camera)
            key, where = view.key, view.key  # the camera's short name; its source may be a long path
        table = hub.counts.table(window_s or None)
        width = table["window_s"]
        counts = _series(table["rows"], key, width, _AGE_COLUMNS if chart == "ages" else _GENDER_COLUMNS)
        span = f"per {_span(width)}, by arrival; a person is counted when they leave the view"
        if chart == "ages":
            svg = stacked_timeline(counts, AGE_KEYS, AGE_CHART_COLOURS, bucket_s=width,
                                   title=f"People by age group, {where}", subtitle=span)
        else:
            svg = stacked_timeline(counts, GENDER_KEYS, GENDER_CHART_COLOURS, bucket_s=width,
                                   title=f"People by gender, {where}", subtitle=span)
        return Response(svg, media_type="image/svg+xml", headers={"cache-control": "no-store"})

    @app.get("/api/people.csv", summary="The table of people in view, as CSV", response_class=Response,
             responses={200: {"content": {"text/csv": {}}}})
    def people_csv(camera: str = "all") -> Response:
        out = io.StringIO()
        writer = csv.DictWriter(out, PEOPLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(people_rows(camera))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="people-{stamp}.csv"'})

    return TokenGate(app, settings.token)


_BARS = 12
#: The stacks of the charts: a counts row's columns under the names the page shows (bottom first).
AGE_KEYS: tuple[str, ...] = (*AGE_GROUPS, "range or age?", "no label yet")
GENDER_KEYS: tuple[str, ...] = ("female", "male", "undecided or no label")
# A person shown with a range (21-40) or "age?" has no one age group: stream.counts counts them as age_undecided.
_AGE_COLUMNS = {**{group: f"age_{group}" for group in AGE_GROUPS}, "range or age?": "age_undecided",
                "no label yet": "estimating"}
_GENDER_COLUMNS = {"female": "female", "male": "male", "undecided or no label": "gender_unknown"}
AGE_CHART_COLOURS = {**AGE_COLOURS, "range or age?": GENDER_COLOURS["unknown"], "no label yet": "#d5d9e2"}
GENDER_CHART_COLOURS = {"female": GENDER_COLOURS["female"], "male": GENDER_COLOURS["male"],
                        "undecided or no label": GENDER_COLOURS["unknown"]}


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _series(rows: list[dict[str, Any]], camera: str, width: float,
            columns: dict[str, str]) -> list[tuple[float, dict[str, int]]]:
    """One camera's (or ``all``'s) rows of the counts table as chart buckets: ``(start, {key: count})`` (``key``
    the chart's name of each of ``columns``) for the last :data:`_BARS` windows up to now and every earlier window
    with arrivals (at most 200), empty ones too."""
    from datetime import datetime

    chosen = {datetime.fromisoformat(row["window_start"]).timestamp(): row for row in rows if row["camera"] == camera}
    # Up to now, or to the latest arrival: a file analysed faster than real time is laid out ahead of the clock.
    last = max([math.floor(time.time() / width) * width, *chosen])
    first = min([*chosen, last - (_BARS - 1) * width])
    count = min(200, int(round((last - first) / width)) + 1)
    buckets: list[tuple[float, dict[str, int]]] = []
    for i in range(count):
        start = last - (count - 1 - i) * width
        row = next((r for t, r in chosen.items() if abs(t - start) < 1e-6), None)
        if row is None:
            buckets.append((start, {}))
            continue
        buckets.append((start, {key: int(row[column]) for key, column in columns.items()}))
    return buckets
