"""End to end: the Flask example (examples/flask_app.py) in a real Chromium.

The app runs as ``python examples/flask_app.py`` on a free port; the browser
uploads through the page's form and script, looks at what the page shows, and
downloads what the app serves. Screenshots of the app are saved under the
test's temporary directory; with ``DEPOT_UPDATE_SCREENSHOTS=1`` they replace the
ones in ``docs/_static/`` that the documentation shows.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.examples.apps import REPO, RunningApp

T = TypeVar("T")

DOCS_STATIC = REPO / "docs" / "_static"
#: Upload speed while the progress bar is photographed: a few seconds for the big file.
THROTTLED_BYTES_PER_SECOND = 4 * 1024 * 1024
BIG_FILE_SIZE = 12 * 1024 * 1024


def make_photo(path: Path) -> bytes:
    """A 640x400 JPEG: a sky, a sun, a sea; its thumbnail is 128x80."""
    from PIL import Image, ImageDraw

    sky = Image.linear_gradient("L").resize((640, 400))
    image = Image.merge(
        "RGB",
        (
            sky.point(lambda v: 90 + v // 3),
            sky.point(lambda v: 140 + v // 4),
            sky.point(lambda _: 235),
        ),
    )
    draw = ImageDraw.Draw(image)
    draw.ellipse((420, 70, 520, 170), fill=(255, 214, 90))
    draw.rectangle((0, 280, 640, 400), fill=(32, 92, 150))
    for y in range(290, 400, 14):
        draw.line((40 + y % 50, y, 600 - y % 70, y), fill=(90, 150, 200), width=2)
    image.save(path, "JPEG", quality=90)
    return path.read_bytes()


def wait(driver: Any, condition: Callable[[Any], T], what: str, timeout: float = 30) -> T:
    """Wait for ``condition(driver)`` to be true; fail saying ``what``.

    While the page reloads, the driver may answer with an error about the page
    it is leaving: the condition is then tried again.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    waiter = WebDriverWait(
        driver, timeout, poll_frequency=0.05, ignored_exceptions=(WebDriverException,)
    )
    return waiter.until(condition, f"waited {timeout}s for {what}")


def rows(driver: Any) -> dict[str, Any]:
    """The rows of the file list, by file name, read from one page in one go."""
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('#files tbody tr'),"
        " row => [row.querySelector('a.open').textContent, row]);"
    )
    return dict(pairs)


def stored_ids(row: Any) -> set[str]:
    """The ids of the stored files a row shows: its file and its thumbnail."""
    from selenium.webdriver.common.by import By

    urls = [a.get_attribute("href") for a in row.find_elements(By.CSS_SELECTOR, "a.open")]
    urls += [img.get_attribute("src") for img in row.find_elements(By.CSS_SELECTOR, "img")]
    return {url.rsplit("/", 1)[1] for url in urls}


def download(driver: Any, link: Any, downloads: Path, size: int) -> Path:
    """Click ``link`` and return the file Chromium saved, once it has ``size`` bytes.

    Chromium saves a file under the name it had before, so the directory is
    emptied first; it reserves the name with an empty file before writing, so
    the file is complete when no partial download is left and it has the size.
    """
    for old in downloads.iterdir():
        old.unlink()
    link.click()

    def saved(_: Any) -> Path | None:
        files = list(downloads.iterdir())
        if not files or any(p.suffix == ".crdownload" for p in files):
            return None
        return next((p for p in files if p.stat().st_size == size), None)

    return wait(driver, saved, f"a download of {size} bytes in {downloads}")


def stored_files(storage: Path) -> list[Path]:
    """The stored files of a local depot: its directories, less the tus uploads' one."""
    return [path for path in storage.iterdir() if path.name != ".depot-uploads"]


def screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), f"Chromium saved no screenshot {name}"
    assert path.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("DEPOT_UPDATE_SCREENSHOTS") == "1":
        DOCS_STATIC.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_STATIC / name)


def test_upload_show_download_replace_delete_in_chromium(
    chromium: Any, flask_server: RunningApp, downloads: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    driver = chromium
    outbox = tmp_path / "to-upload"
    outbox.mkdir()
    photo = outbox / "harbour.jpg"
    photo_bytes = make_photo(photo)
    page = outbox / "notes.html"
    page.write_text("<title>rendered</title><script>document.title='ran'</script><h1>Hi</h1>")
    big = outbox / "recordings.zip"
    big.write_bytes(os.urandom(BIG_FILE_SIZE))

    driver.get(flask_server.url + "/")
    assert driver.title == "filebox"
    assert driver.find_element(By.ID, "empty").is_displayed()

    # Two files in one go, through the page's script.
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(f"{photo}\n{page}")
    driver.find_element(By.CSS_SELECTOR, "#upload button").click()
    wait(driver, lambda d: set(rows(d)) == {"harbour.jpg", "notes.html"}, "both files listed")

    # The thumbnail is an image the browser decoded: 640x400 fits 128x128 as 128x80.
    thumb = rows(driver)["harbour.jpg"].find_element(By.CSS_SELECTOR, "img.thumb")
    natural = wait(
        driver,
        lambda d: d.execute_script(
            "const i = arguments[0];"
            "return i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null;",
            thumb,
        ),
        "the thumbnail to load",
    )
    assert natural == [128, 80]
    cells = rows(driver)["harbour.jpg"].find_elements(By.TAG_NAME, "td")
    assert [c.text for c in cells[2:4]] == [f"{len(photo_bytes) / 1024:.1f} KiB", "image/jpeg"]

    # A big file, slowed down so that the progress bar is seen moving.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": THROTTLED_BYTES_PER_SECOND,
        },
    )
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(big))
    driver.find_element(By.CSS_SELECTOR, "#upload button").click()
    progress = driver.find_element(By.CSS_SELECTOR, "#progress progress")
    wait(
        driver,
        lambda d: 0.3 < d.execute_script("return arguments[0].position;", progress) < 0.9,
        "the progress bar to pass 30%",
    )
    label = driver.find_element(By.CSS_SELECTOR, "#progress .label").text
    assert label.endswith("%)") and " of 12.0 MiB" in label, label
    screenshot(driver, tmp_path, "filebox-upload.png")
    wait(driver, lambda d: "recordings.zip" in rows(d), "the big file listed", timeout=60)
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    assert rows(driver)["recordings.zip"].find_element(By.CSS_SELECTOR, "td.size").text == (
        "12.0 MiB"
    )
    screenshot(driver, tmp_path, "filebox-list.png")

    # Downloads give back the bytes uploaded.
    for name, source in (("harbour.jpg", photo), ("notes.html", page)):
        link = rows(driver)[name].find_element(By.CSS_SELECTOR, "a.download")
        saved = download(driver, link, downloads, source.stat().st_size)
        assert (saved.name, saved.read_bytes()) == (name, source.read_bytes())

    # Opening the HTML file downloads it: it is never a page of the app's site.
    page_url = driver.current_url
    link = rows(driver)["notes.html"].find_element(By.CSS_SELECTOR, "a.open")
    saved = download(driver, link, downloads, page.stat().st_size)
    assert saved.read_bytes() == page.read_bytes()
    assert (driver.current_url, driver.title) == (page_url, "filebox")
    assert len(driver.window_handles) == 1
    html_url = rows(driver)["notes.html"].find_element(By.CSS_SELECTOR, "a.open")
    with urllib.request.urlopen(html_url.get_attribute("href")) as response:
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert "sandbox" in response.headers["Content-Security-Policy"]

    # Replacing: the new content is listed, the old file leaves storage.
    old_ids = stored_ids(rows(driver)["notes.html"])
    text = outbox / "notes.txt"
    text.write_text("plain notes\n")
    replace = rows(driver)["notes.html"].find_element(By.CSS_SELECTOR, "form.replace input")
    replace.send_keys(str(text))
    wait(
        driver, lambda d: set(rows(d)) == {"notes.txt", "harbour.jpg", "recordings.zip"}, "replaced"
    )
    assert all(not (flask_server.storage / i).exists() for i in old_ids), old_ids
    assert all((flask_server.storage / i).is_dir() for i in stored_ids(rows(driver)["notes.txt"]))

    # Deleting the photo: gone from the list, and the photo and thumbnail from storage.
    photo_ids = stored_ids(rows(driver)["harbour.jpg"])
    assert len(photo_ids) == 2 and all((flask_server.storage / i).is_dir() for i in photo_ids)
    rows(driver)["harbour.jpg"].find_element(By.CSS_SELECTOR, "form.delete button").click()
    alert = wait(driver, expected_conditions.alert_is_present(), "the confirmation dialog")
    assert alert.text == "Delete harbour.jpg?"
    alert.accept()
    wait(driver, lambda d: set(rows(d)) == {"notes.txt", "recordings.zip"}, "the photo gone")
    assert [i for i in photo_ids if (flask_server.storage / i).exists()] == []


PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
#: A file name with no space to break at: it must wrap, not widen the page.
LONG_NAME = "quarterly-report-of-the-harbour-authority-2026-final-revised-v3.pdf"


def overflow(driver: Any) -> tuple[int, int]:
    """The page's width and the viewport's: the first is larger if the page runs off it."""
    width, viewport = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"
    )
    return width, viewport


def shown_error(driver: Any) -> str:
    return driver.execute_script(
        "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent;"
    )


def test_phone_width_refusals_and_the_upload_limit_in_chromium(
    chromium: Any, tmp_path: Path, data_dir: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    from tests.examples.apps import app_environment, example_command, make_jpeg, serving

    driver = chromium
    outbox = tmp_path / "to-upload"
    outbox.mkdir()
    photo = outbox / "harbour.jpg"
    make_photo(photo)
    report = outbox / LONG_NAME
    report.write_bytes(b"%PDF-1.4 not much of a report\n")
    sheet = outbox / "tides.ods"
    sheet.write_bytes(b"PK\x03\x04" + bytes(300))
    cut = outbox / "cut.jpg"
    cut.write_bytes(make_jpeg((600, 400))[:1500])
    notes = outbox / "notes.txt"
    notes.write_text("kept\n")
    big = outbox / "too-big.zip"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    too_large = (
        "This upload is larger than the 2.0 MiB accepted at once. Upload fewer or smaller files."
    )

    env = app_environment(data_dir, FILEBOX_MAX_UPLOAD_MB="2")
    with serving(example_command("flask_app.py"), env, tmp_path / "flask_app.log") as url:
        storage = RunningApp(url.rstrip("/"), data_dir).storage
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        driver.get(url)
        assert driver.execute_script("return window.innerWidth;") == 390
        assert overflow(driver)[0] <= 390
        chooser = driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]")
        chooser.send_keys(f"{photo}\n{report}\n{sheet}")
        driver.find_element(By.CSS_SELECTOR, "#upload button").click()
        wait(driver, lambda d: len(rows(d)) == 3, "three files listed")
        thumb = rows(driver)["harbour.jpg"].find_element(By.CSS_SELECTOR, "img.thumb")
        wait(driver, lambda d: d.execute_script("return arguments[0].complete;", thumb), "thumb")
        width, viewport = overflow(driver)
        assert width <= viewport == 390, f"the page is {width} px wide in a {viewport} px screen"
        # Every button is on the screen, none cut off at its right edge.
        rights = driver.execute_script(
            "return Array.from(document.querySelectorAll('#files .button, #files button'),"
            " b => b.getBoundingClientRect().right);"
        )
        assert len(rights) == 9 and max(rights) <= 390, rights
        screenshot(driver, tmp_path, "filebox-phone.png")

        # The script refuses a file over the limit before sending a byte of it.
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.get(url)
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(big))
        driver.find_element(By.CSS_SELECTOR, "#upload button").click()
        wait(driver, lambda d: shown_error(d) == too_large, "the limit shown by the script")
        # At a desktop's width the table, long name and long type included, fits the page.
        width, viewport = overflow(driver)
        table = driver.execute_script(
            "return [document.getElementById('files').getBoundingClientRect().right,"
            " document.querySelector('header').getBoundingClientRect().right];"
        )
        assert width <= viewport and table[0] <= table[1], (width, viewport, table)
        assert not driver.find_element(By.ID, "progress").is_displayed()
        screenshot(driver, tmp_path, "filebox-too-large.png")

        # Past the script's check (a changed page, an old cached one), the server's
        # 413 answer is the page with the same message, which the script shows.
        driver.execute_script("document.getElementById('upload').dataset.maxUpload = 1e12;")
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(big))
        driver.find_element(By.CSS_SELECTOR, "#upload button").click()
        wait(driver, lambda d: shown_error(d) == too_large, "the server's 413 message shown")
        assert set(rows(driver)) == {"harbour.jpg", LONG_NAME, "tides.ods"}
        assert all(b.is_enabled() for b in driver.find_elements(By.TAG_NAME, "button"))

        # A damaged image is refused with the reason; the file sent with it is stored
        # and listed, and its row works like the others.
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(
            f"{cut}\n{notes}"
        )
        driver.find_element(By.CSS_SELECTOR, "#upload button").click()
        wait(driver, lambda d: "notes.txt" in rows(d), "the good file listed")
        assert shown_error(driver).startswith(
            "cut.jpg was not stored: This image is damaged or incomplete"
        )
        assert "cut.jpg" not in rows(driver)
        assert len(stored_files(storage)) == 5  # photo, thumbnail, report, sheet, notes
        rows(driver)["notes.txt"].find_element(By.CSS_SELECTOR, "form.delete button").click()
        alert = wait(driver, expected_conditions.alert_is_present(), "the confirmation dialog")
        alert.accept()
        wait(driver, lambda d: "notes.txt" not in rows(d), "notes.txt deleted")
        assert shown_error(driver) == ""
        assert len(stored_files(storage)) == 4

        # The favicon the page names is served.
        with urllib.request.urlopen(url + "favicon.ico") as response:
            assert response.headers["Content-Type"] == "image/vnd.microsoft.icon"
