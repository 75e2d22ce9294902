"""The server as users start it and hostile text in a real browser (issue 9).

`streamlit run app.py` with the project's .streamlit/config.toml must listen on the loopback interface
only. An imported results CSV whose cells hold Markdown links, images, HTML and spreadsheet formulas
must be shown as text in Chromium (no link, no image, no request to the hostile host) and exported with
its formula cells neutralised.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import test_browser
from tests.test_app import result_row
from tests.test_browser import CHROMIUM, ROOT, no_exception, settle

pytestmark = pytest.mark.hostile
server, browser = test_browser.server, test_browser.browser  # the browser test's fixtures

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net/tcp* writes them
EVIL = "evil.invalid"
HOSTILE = {"data_source": f"[click me](http://{EVIL}/a) ![pixel](http://{EVIL}/p.png) "
                          f"<img src=http://{EVIL}/h.png> :red[red] **bold**",
           "run": f'=HYPERLINK("http://{EVIL}/x","run") <a href="http://{EVIL}/r">r</a>',
           "checkpoint": "@SUM(1+1)*cmd|' /C calc'!A0"}


def listening(port: int) -> set[str]:
    """The local addresses (hex, as in /proc/net/tcp and tcp6) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None without a network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net to see listening sockets")
def test_streamlit_run_as_the_readme_says_listens_on_localhost_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(tmp_path / "streamlit.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                                cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "streamlit.log").read_text()
            time.sleep(0.3)
        assert listening(port) <= LOOPBACK, f"listening on {listening(port)}, not only on the loopback interface"
        outward = outward_address()
        if outward is not None:
            with pytest.raises(OSError), socket.create_connection((outward, port), timeout=3):
                pass
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium")
def test_imported_markdown_and_formulas_are_text_in_the_browser_and_exported_neutralised(server, browser, tmp_path):
    from busadv.results import rows_to_csv

    rows = [result_row("standard", 0.0, attack, eps, 0, score, source=HOSTILE["data_source"], run=HOSTILE["run"],
                       checkpoint=HOSTILE["checkpoint"])
            for attack, eps, score in (("none", 0.0, 0.8), ("fgsm", 8 / 255, 0.3))]
    upload = rows_to_csv(rows).replace("'=HYPERLINK", "=HYPERLINK").replace("'@SUM", "@SUM")  # raw, as a hostile file
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{server}/Results")
    settle(page)
    page.get_by_text("Add rows from a results file").click()
    page.locator('input[type="file"]').set_input_files(
        {"name": "hostile.csv", "mimeType": "text/csv", "buffer": upload.encode()})
    page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=60_000)
    settle(page)
    no_exception(page)
    main = page.locator('[data-testid="stMain"]')
    shown = main.inner_text().replace("\u2060", "")  # word joiners keep bare addresses from becoming links
    assert f"Data: {HOSTILE['data_source']}" in shown  # every character shown, as text
    assert page.locator(f'a[href*="{EVIL}"]').count() == 0 and page.locator(f'img[src*="{EVIL}"]').count() == 0
    assert not re.search(rf"<(a|img|image)\b[^>]*{re.escape(EVIL)}", page.content())  # SVG (charts) included
    assert main.locator("strong", has_text="bold").count() == 0
    assert not [url for url in requests if EVIL in url]

    with page.expect_download() as download:
        page.get_by_role("button", name="Download these rows as CSV").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert exported and {row["run"] for row in exported} == {"'" + HOSTILE["run"]}
    assert {row["checkpoint"] for row in exported} == {"'" + HOSTILE["checkpoint"]}
    assert all(not value.startswith(("=", "+", "-", "@")) for row in exported for value in row.values())
