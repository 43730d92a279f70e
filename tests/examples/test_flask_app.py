"""The Flask example (examples/flask_app.py) through WebTest: what each request does."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from tests.examples.apps import make_jpeg

pytest.importorskip("flask", reason="the 'web' extra is not installed")


@pytest.fixture
def app(settings: Any) -> TestApp:
    from flask_app import create_app

    return TestApp(create_app(settings))


def listed(app: TestApp) -> dict[str, dict[str, str]]:
    """The rows of the page: name -> cells and the URLs of the file and thumbnail."""
    page = app.get("/")
    found = {}
    for row in page.html.select("#files tbody tr"):
        link = row.select_one("a.open")
        thumb = row.select_one("img.thumb")
        found[link.text] = {
            "id": row["data-id"],
            "url": link["href"],
            "thumb": thumb["src"] if thumb else "",
            "size": row.select_one("td.size").text,
            "type": row.select_one("td.type").text,
            "date": row.select_one("td.date").text,
        }
    return found


def stored_ids(storage: Path) -> set[str]:
    return {p.name for p in storage.iterdir()} if storage.exists() else set()


def upload(
    app: TestApp, *files: tuple[str, bytes], field: str = "files", url: str = "/files", **kw: Any
) -> Any:
    return app.post(url, upload_files=[(field, name, data) for name, data in files], **kw)


def test_the_page_says_there_are_no_files_yet(app: TestApp) -> None:
    page = app.get("/")
    assert page.html.select_one("#empty") is not None
    assert page.html.select_one("form#upload")["action"] == "/files"
    assert "local storage" in page.text


def test_several_files_are_listed_with_size_type_date_and_thumbnail(app: TestApp) -> None:
    photo = make_jpeg()
    response = upload(app, ("photo.jpg", photo), ("notes.txt", b"some notes\n"))
    assert response.status_int == 303 and response.location.endswith("/")

    files = listed(app)
    assert set(files) == {"photo.jpg", "notes.txt"}
    assert (files["photo.jpg"]["size"], files["photo.jpg"]["type"]) == (
        f"{len(photo) / 1024:.1f} KiB",
        "image/jpeg",
    )
    assert (files["notes.txt"]["size"], files["notes.txt"]["type"]) == ("11 bytes", "text/plain")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", files["notes.txt"]["date"])
    assert files["notes.txt"]["thumb"] == ""

    from PIL import Image

    thumb = Image.open(io.BytesIO(app.get(files["photo.jpg"]["thumb"]).body))
    assert (thumb.format, thumb.size) == ("PNG", (128, 85))


def test_files_come_back_as_uploaded_through_depot_middleware(app: TestApp) -> None:
    photo = make_jpeg((2000, 1200))  # larger than filedepot's 1024 px: kept as it is
    upload(app, ("photo.jpg", photo), ("notes.txt", b"some notes\n"))
    files = listed(app)
    assert files["photo.jpg"]["url"].startswith("/depot/filebox/")
    response = app.get(files["photo.jpg"]["url"])
    assert (response.body, response.content_type) == (photo, "image/jpeg")
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert app.get(files["notes.txt"]["url"]).body == b"some notes\n"


def test_a_video_is_served_in_ranges_so_that_it_seeks(app: TestApp) -> None:
    video = bytes(range(256)) * 64
    upload(app, ("clip.mp4", video))
    url = listed(app)["clip.mp4"]["url"]
    assert app.get("/").html.select_one("video")["src"] == url
    response = app.get(url, headers={"Range": "bytes=1000-1999"}, status=206)
    assert response.body == video[1000:2000]
    assert response.headers["Content-Range"] == f"bytes 1000-1999/{len(video)}"
    assert response.headers["Accept-Ranges"] == "bytes"


def test_an_html_file_is_a_download_never_a_page(app: TestApp) -> None:
    upload(app, ("page.html", b"<script>alert(1)</script>"))
    response = app.get(listed(app)["page.html"]["url"])
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def error_of(response: Any) -> str:
    """The message the page shows above the list (empty when it shows none)."""
    error = response.html.select_one("#error")
    return "" if error is None or error.has_attr("hidden") else error.text.strip()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("cut.jpg", make_jpeg((600, 400))[:1500], "This image is damaged or incomplete"),
        ("noise.jpg", bytes(range(256)) * 8, "This file is not an image in a format accepted"),
        ("empty.png", b"", "This file is not an image in a format accepted"),
    ],
)
def test_a_damaged_image_is_refused_with_the_reason_on_the_page(
    app: TestApp, settings: Any, name: str, content: bytes, reason: str
) -> None:
    storage = Path(settings.depot["depot.storage_path"])
    response = upload(app, (name, content), ("notes.txt", b"kept\n"), status=422)
    assert response.content_type == "text/html"
    assert error_of(response).startswith(f"{name} was not stored: {reason}")
    # The other file of the same upload is stored, and the page lists it.
    assert [row.a.text for row in response.html.select("#files tbody tr")] == ["notes.txt"]
    assert list(listed(app)) == ["notes.txt"]
    assert len(stored_ids(storage)) == 1
    assert error_of(app.get("/")) == ""


def test_a_damaged_image_does_not_replace_a_file(app: TestApp, settings: Any) -> None:
    storage = Path(settings.depot["depot.storage_path"])
    photo = make_jpeg()
    upload(app, ("photo.jpg", photo))
    before = listed(app)["photo.jpg"]
    url = f"/files/{before['id']}/replace"
    response = upload(app, ("cut.jpg", photo[:700]), field="file", url=url, status=422)
    assert error_of(response).startswith("cut.jpg was not stored: This image is damaged")
    assert listed(app) == {"photo.jpg": before}
    assert app.get(before["url"]).body == photo
    assert len(stored_ids(storage)) == 2


def test_replace_stores_the_new_content_and_removes_the_old(app: TestApp, settings: Any) -> None:
    storage = Path(settings.depot["depot.storage_path"])
    upload(app, ("photo.jpg", make_jpeg()))
    before = stored_ids(storage)
    assert len(before) == 2  # the image and its thumbnail
    document = listed(app)["photo.jpg"]

    url = f"/files/{document['id']}/replace"
    upload(app, ("notes.txt", b"new content\n"), field="file", url=url)
    files = listed(app)
    assert list(files) == ["notes.txt"] and files["notes.txt"]["id"] == document["id"]
    assert app.get(files["notes.txt"]["url"]).body == b"new content\n"
    assert stored_ids(storage) & before == set()
    assert len(stored_ids(storage)) == 1
    app.get(document["url"], status=404)


def test_delete_removes_the_document_and_its_stored_files(app: TestApp, settings: Any) -> None:
    storage = Path(settings.depot["depot.storage_path"])
    upload(app, ("photo.jpg", make_jpeg()), ("notes.txt", b"keep me\n"))
    files = listed(app)
    response = app.post(f"/files/{files['photo.jpg']['id']}/delete")
    assert response.status_int == 303
    assert list(listed(app)) == ["notes.txt"]
    assert len(stored_ids(storage)) == 1
    app.get(files["photo.jpg"]["thumb"], status=404)
    app.post(f"/files/{files['photo.jpg']['id']}/delete", status=404)


def test_missing_files_and_documents_are_answered_with_the_page(app: TestApp) -> None:
    response = app.post("/files", upload_files=[("files", "", b"")], status=400)
    assert error_of(response) == "Choose one or more files to upload."
    assert response.html.select_one("form#upload") is not None
    response = upload(app, ("a.txt", b"a"), field="file", url="/files/99/replace", status=404)
    assert error_of(response) == "There is no file 99: it may have been deleted. Reload the page."
    app.get("/nowhere", status=404)


@pytest.fixture
def small_app(data_dir: Path) -> TestApp:
    """The app accepting at most 1 MiB of files in one upload."""
    from filebox.settings import from_env
    from flask_app import create_app

    settings = from_env({"FILEBOX_DATA": str(data_dir), "FILEBOX_MAX_UPLOAD_MB": "1"})
    return TestApp(create_app(settings))


TOO_LARGE = (
    "This upload is larger than the 1.0 MiB accepted at once. Upload fewer or smaller files."
)


@pytest.mark.parametrize(
    "sizes",
    [
        [1024 * 1024 + 1],  # a byte too many: the request's length is within the form's room
        [600 * 1024, 600 * 1024],  # two files that are too many together
        [5 * 1024 * 1024],  # refused from the request's length, before the form is read
    ],
)
def test_an_upload_larger_than_the_limit_gets_the_page_with_the_limit(
    small_app: TestApp, sizes: list[int]
) -> None:
    files = [(f"big{i}.bin", b"x" * size) for i, size in enumerate(sizes)]
    response = upload(small_app, *files, status=413)
    assert response.content_type == "text/html"
    assert error_of(response) == TOO_LARGE
    assert response.html.select_one("form#upload") is not None
    assert listed(small_app) == {}


def test_the_limit_is_on_the_files_and_the_page_tells_the_script(small_app: TestApp) -> None:
    upload(small_app, ("exact.bin", b"x" * 1024 * 1024), status=303)
    assert list(listed(small_app)) == ["exact.bin"]
    form = small_app.get("/").html.select_one("form#upload")
    assert (form["data-max-upload"], form["data-too-large"]) == (str(1024 * 1024), TOO_LARGE)
    document = listed(small_app)["exact.bin"]
    url = f"/files/{document['id']}/replace"
    big = ("big.bin", b"y" * (1024 * 1024 + 1))
    response = upload(small_app, big, field="file", url=url, status=413)
    assert error_of(response) == TOO_LARGE
    assert small_app.get(document["url"]).body == b"x" * 1024 * 1024


def test_the_favicon_is_a_small_icon(app: TestApp) -> None:
    from PIL import Image

    response = app.get("/favicon.ico")
    assert response.content_type == "image/vnd.microsoft.icon"
    assert len(response.body) < 4096
    icon = Image.open(io.BytesIO(response.body))
    assert icon.format == "ICO" and (32, 32) in icon.info["sizes"]
    assert "max-age" in response.headers["Cache-Control"]
    assert app.get("/").html.select_one("link[rel=icon]")["href"] == "/favicon.ico"


def test_depot_backend_s3_stores_in_the_bucket(
    data_dir: Path, s3_endpoint: dict[str, str], s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filebox.settings import from_env
    from flask_app import create_app

    from tests.backends.s3 import remove_bucket

    # What a user sets: boto3 reads the AWS_ variables itself.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint["access_key_id"] or "anonymous")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint["secret_access_key"] or "anonymous")
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_endpoint["region_name"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint["endpoint_url"])
    env = {"FILEBOX_DATA": str(data_dir), "DEPOT_BACKEND": "s3", "DEPOT_S3_BUCKET": "filebox-test"}
    try:
        app = TestApp(create_app(from_env(env)))
        upload(app, ("photo.jpg", make_jpeg()), ("notes.txt", b"in the bucket\n"))
        files = listed(app)
        assert app.get(files["notes.txt"]["url"]).body == b"in the bucket\n"
        objects = s3_client.list_objects_v2(Bucket="filebox-test")["Contents"]
        assert len(objects) == 3  # the photo, its thumbnail, the notes
        assert "s3 storage" in app.get("/").text

        app.post(f"/files/{files['photo.jpg']['id']}/delete")
        assert len(s3_client.list_objects_v2(Bucket="filebox-test")["Contents"]) == 1
    finally:
        remove_bucket(s3_client, "filebox-test")


def test_a_refused_name_is_shown_as_text_never_as_markup(app: TestApp) -> None:
    name = "<img src=x onerror=alert(1)>.jpg"
    response = upload(app, (name, b"not an image"), status=422)
    assert error_of(response).startswith(f"{name} was not stored: This file is not an image")
    assert response.html.select("#error img") == []
    assert "<img src=x" not in response.text


def test_an_image_with_too_many_pixels_is_refused_before_it_is_decoded(
    app: TestApp, settings: Any
) -> None:
    from PIL import Image

    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")  # 100 megapixels in a few kB
    response = upload(app, ("bomb.png", bomb.getvalue()), status=422)
    assert error_of(response).startswith(
        "bomb.png was not stored: This image has too many pixels; at most 89.5 megapixels"
    )
    assert listed(app) == {}
    assert stored_ids(Path(settings.depot["depot.storage_path"])) == set()
