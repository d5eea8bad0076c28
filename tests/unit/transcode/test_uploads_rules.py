"""Upload request validation and object keys."""

from __future__ import annotations

from typing import Any

import pytest
from upload_rules import MAX_UPLOAD_BYTES, InvalidUpload, parse_upload_request, safe_filename, upload_key


def test_valid_request() -> None:
    request = parse_upload_request(
        {"filename": "Holiday.MOV", "contentType": "video/QuickTime", "size": 1234}
    )
    assert (request.filename, request.content_type, request.size) == ("Holiday.MOV", "video/quicktime", 1234)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "JSON object"),
        ({"contentType": "video/mp4", "size": 1}, "filename"),
        ({"filename": "a.mp4", "contentType": "image/png", "size": 1}, "not a supported video type"),
        ({"filename": "a.mp4", "contentType": "video/mp4", "size": 0}, "positive"),
        ({"filename": "a.mp4", "contentType": "video/mp4", "size": True}, "integer"),
        ({"filename": "a.mp4", "contentType": "video/mp4", "size": "10"}, "integer"),
        ({"filename": "a.mp4", "contentType": "video/mp4", "size": MAX_UPLOAD_BYTES + 1}, "2 GiB"),
        ({"filename": "x" * 300, "contentType": "video/mp4", "size": 1}, "at most"),
    ],
)
def test_invalid_requests_say_what_to_fix(body: Any, fragment: str) -> None:
    with pytest.raises(InvalidUpload) as caught:
        parse_upload_request(body)
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\clip.mp4", "clip.mp4"),
        ("Été à Paris (1).mov", "Ete-a-Paris-1.mov"),
        ("....mp4", "video.mp4"),
        ("no extension", "no-extension"),
        ("中文.mp4", "video.mp4"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_upload_key_layout() -> None:
    assert upload_key("alice", "job-1", "../a b.mp4") == "uploads/alice/job-1/a-b.mp4"
