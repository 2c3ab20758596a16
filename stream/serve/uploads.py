"""Reading an upload from a request: size and type limits, in memory only.

An upload is the raw request body or the multipart form field ``file``. It is read into memory, never
written to disk (no temporary file, no spooling: Starlette's own form parser spools parts over 1 MB to a
temporary file, so it is not used), checked against ``serve.max_upload_mb`` while it arrives, and
recognised by its first bytes, not by its name or declared type. Nothing from the request names a file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from stream.config import MAX_IMAGE_PIXELS

#: Bytes a multipart envelope may add around the file (boundaries, part headers, small fields).
_MULTIPART_SLACK = 64 * 1024
ACCEPTED = "JPEG, PNG, WebP or BMP images, MP4/MOV clips"
#: Largest image decoded (stream.config, the one limit for files and uploads): read here from the header, before
#: decoding, to answer 413.
MAX_PIXELS = MAX_IMAGE_PIXELS


class UploadError(Exception):
    """An upload the server refuses: ``status`` is the HTTP code, the message says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    """An upload read into memory: its bytes, what they are (``"image"`` or ``"video"``) and their format."""

    data: bytes
    kind: str
    format: str


def sniff(data: bytes) -> tuple[str, str] | None:
    """``(kind, format)`` of an upload from its first bytes, or None when it is none of :data:`ACCEPTED`."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "WebP"
    if head.startswith(b"BM"):
        return "image", "BMP"
    if head[4:8] == b"ftyp":
        return "video", "MP4/MOV"
    return None


async def read_upload(content_type: str, content_length: str | None, body: AsyncIterator[bytes],
                      max_bytes: int) -> Upload:
    """Read and check an upload.

    Args:
        content_type: The request's Content-Type header ("" when absent).
        content_length: Its Content-Length header, or None (chunked).
        body: The request body's chunks (``request.stream()``).
        max_bytes: Largest file accepted.

    Raises:
        UploadError: 413 too large, 415 not an accepted type, 400 empty or malformed.
    """
    limit_mb = max_bytes / 2**20
    multipart = content_type.lower().startswith("multipart/form-data")
    envelope = max_bytes + (_MULTIPART_SLACK if multipart else 0)
    too_large = UploadError(413, f"upload larger than serve.max_upload_mb={limit_mb:g} MB; send a smaller file")
    if content_length is not None and content_length.isdigit() and int(content_length) > envelope:
        raise too_large
    received = bytearray()
    async for chunk in body:
        received += chunk
        if len(received) > envelope:
            raise too_large
    data = _form_file(bytes(received), content_type) if multipart else bytes(received)
    if len(data) > max_bytes:
        raise too_large
    if not data:
        raise UploadError(400, "empty upload; send an image or a clip as the body or as the form field 'file'")
    kind = sniff(data)
    if kind is None:
        raise UploadError(415, f"unsupported file type; send {ACCEPTED}")
    size = image_size(data) if kind[0] == "image" else None
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise UploadError(413, f"image of {size[0]}x{size[1]} pixels is larger than {MAX_PIXELS // 10**6} "
                               "megapixels; send a smaller one")
    return Upload(data, *kind)


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` an image's header declares, read without decoding it; None when not found."""
    if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"BM") and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), abs(
            int.from_bytes(data[22:26], "little", signed=True))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8X" and len(data) >= 30:
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 " and len(data) >= 30:
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        return None
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's start-of-frame marker (any SOFn)."""
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")
        at += 2 + length
    return None


class _FormCollector:
    """python-multipart callbacks that keep each part's name and bytes in memory."""

    def __init__(self) -> None:
        self.parts: dict[str, bytes] = {}
        self._field = self._value = b""
        self._name: str | None = None
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {"on_header_field": self._on_header_field, "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end, "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data, "on_part_end": self._on_part_end}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        if self._field.lower() == b"content-disposition":
            _, disposition = parse_options_header(self._value)
            self._name = disposition.get(b"name", b"").decode("utf-8", "replace")
        self._field = self._value = b""

    def _on_part_begin(self) -> None:
        self._name, self._data = None, bytearray()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]

    def _on_part_end(self) -> None:
        if self._name is not None:
            self.parts[self._name] = bytes(self._data)


def _form_file(body: bytes, content_type: str) -> bytes:
    """The bytes of the form field ``file`` of a multipart/form-data body, parsed in memory."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data without a boundary; let the client build the form")
    collector = _FormCollector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as error:
        raise UploadError(400, f"malformed multipart/form-data body ({error}); send the file as the field 'file'") \
            from None
    if "file" not in collector.parts:
        names = ", ".join(sorted(collector.parts)) or "none"
        raise UploadError(400, f"no form field 'file' (got: {names}); send the image or clip as 'file'")
    return collector.parts["file"]
