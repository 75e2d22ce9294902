"""Time from `streamlit run app.py` to the first page, with the decoded-image cache warm against cold."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from busadv.bench.common import Row, environment, median, not_measured, paired_ratio, stop
from busadv.bench.context import SIMPLE, Bench
from busadv.data import load_busi
from busadv.settings import PROJECT_ROOT

NAME = "startup: streamlit run app.py to first page"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def streamlit_server(root: Path, env: dict[str, str], port: int, log: Path, timeout: float = 180) -> Iterator[str]:
    """`streamlit run app.py` in `root` with exactly `env`; its base URL once healthy, stopped on exit."""
    with open(log, "w") as out, subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True) as proc:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
        try:
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not come up: " + log.read_text()[-2000:])
                time.sleep(0.2)
            yield base
        finally:
            stop(proc)


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return int(response.status), response.read()


@contextlib.contextmanager
def headless_browser() -> Iterator[Any | None]:
    """A headless Chromium through Playwright where both are installed, else None."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if not exe:
        yield None
        return
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                "--disable-background-networking"])
        try:
            yield browser
        finally:
            browser.close()


def _rendered(browser: Any, url: str, timeout: float) -> tuple[bool, bool]:
    """(the script finished, the page shows an exception) after loading `url` in a new tab."""
    page = browser.new_page()
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                               timeout=timeout * 1000, state="attached")
        return True, page.query_selector('[data-testid="stException"]') is not None
    finally:
        page.close()


def time_startup(env: dict[str, str], browser: Any | None = None, timeout: float = 120) -> dict[str, float]:
    """Seconds from `streamlit run app.py` to a healthy server, to GET / and (with a browser) to a rendered page."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    start = time.perf_counter()
    out: dict[str, float] = {}
    with subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            base = f"http://127.0.0.1:{port}"
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited ({proc.returncode}): {proc.communicate()[1][-300:]}")
                if time.perf_counter() - start > timeout:
                    raise TimeoutError("no healthy server within the time limit")
                try:
                    if _get(base + "/_stcore/health", 1.0)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.05)
            out["health"] = time.perf_counter() - start
            status, body = _get(base + "/", 10.0)
            if status != 200 or b"<html" not in body.lower():
                raise RuntimeError(f"GET / answered {status}")
            out["page"] = time.perf_counter() - start
            if browser is not None:
                _, raised = _rendered(browser, base + "/", timeout)
                out["rendered"] = time.perf_counter() - start
                out["exception"] = float(raised)
        finally:
            stop(proc)
    return out


def bench_startup(folder: Path, checkpoints: Path, use_browser: bool = True, rounds: int = 1) -> list[Row]:
    """Starts with a fresh decoded-image cache (cold) and with one filled for both model sizes (warm), as after
    any first use; `rounds` of each, interleaved cold warm, warm cold, ..."""
    if not (PROJECT_ROOT / "app.py").exists():
        return [not_measured("startup", NAME, "app not ready", "no app.py")]
    try:
        import streamlit  # noqa: F401
    except ImportError:
        return [Row("startup", NAME, status="not installed")]
    times: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    try:
        with tempfile.TemporaryDirectory(prefix="busadv-bench-") as scratch, \
                headless_browser() if use_browser else contextlib.nullcontext() as browser:
            warm_cache = Path(scratch) / "warm-cache"
            with environment({"BUSADV_CACHE": str(warm_cache)}):
                for size in (128, 224):
                    load_busi(folder, size)
            env = {"BUSADV_DATA": str(folder), "BUSADV_CHECKPOINTS": str(checkpoints),
                   "BUSADV_HOME": str(Path(scratch) / "home")}
            for r in range(rounds):
                for side in ("cold", "warm") if r % 2 == 0 else ("warm", "cold"):
                    cache = warm_cache if side == "warm" else Path(scratch) / f"cold-cache-{r}"
                    times[side].append(time_startup({**env, "BUSADV_CACHE": str(cache)}, browser))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return [not_measured("startup", NAME, "error", f"{type(exc).__name__}: {str(exc)[:200]}")]
    rows = []
    raised = any(t.get("exception") for side in times.values() for t in side)
    for key, name in (("page", "startup to first page (GET / after /_stcore/health)"),
                      ("rendered", "startup to first rendered page (headless Chromium, script finished)")):
        if not all(key in t for side in times.values() for t in side):
            rows.append(Row("startup", name, status="skipped",
                            note="needs Playwright and Chromium; not in --quick or with --no-browser"))
            continue
        warm, cold = ([t[key] for t in times[side]] for side in ("warm", "cold"))
        ratio, noise = paired_ratio(warm, cold)
        rows.append(Row("startup", name, median(warm), median(cold), "s", ratio, extra={"noise": noise, **times},
                        note="busadv = data cache warm, reference = cold (a fresh BUSADV_CACHE)"
                             + ("; the page showed an exception" if raised and key == "rendered" else "")))
    return rows


def section(bench: Bench) -> list[Row]:
    bench.checkpoint(SIMPLE)  # the app lists the checkpoints in BUSADV_CHECKPOINTS
    return bench_startup(bench.folder, bench.checkpoint_dir, use_browser=bench.browser,
                         rounds=1 if bench.plan.quick else 2)
