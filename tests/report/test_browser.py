"""report.html in a real browser: headless Chromium opens the report of a train, a compare and a tune run, and
the page must render (a screenshot that is not one colour), decode every embedded image, log no error, and
request nothing — the report is one self-contained file.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands on fd 3, replies on
fd 4, NUL-separated JSON) with the standard library only. Skipped when no Chromium binary is installed
(Debian: apt-get install chromium; .ci/run installs it).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image  # matplotlib's own dependency, so always present where nnopt is

from nnopt.cli import main

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH, HEIGHT = 1280, 900
FLAGS = [
    "--headless", "--disable-gpu", "--hide-scrollbars", "--mute-audio", "--no-first-run",
    "--no-default-browser-check", "--disable-extensions", "--disable-sync", "--disable-background-networking",
    "--disable-component-update", "--disable-default-apps", "--disable-dev-shm-usage",
    "--no-sandbox",  # the sandbox cannot start as root or in most containers; the page is our own file
    "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing may leave the machine, whatever the page asks for
    "--remote-debugging-pipe",
]
# Every image decoded (or not): decode() settles once the data: URI is decoded or has failed.
IMAGES_JS = """Promise.all(Array.from(document.images, img => img.decode().then(() => true, () => false)))
  .then(ok => Array.from(document.images, (img, i) => ({src: img.src.slice(0, 30), decoded: ok[i],
                                                         width: img.naturalWidth, height: img.naturalHeight})))"""


def _chromium() -> str | None:
    return next((path for path in map(shutil.which, BINARIES) if path), None)


class Browser:
    """One headless Chromium; `send` runs a DevTools command and keeps the events that arrive meanwhile."""

    def __init__(self, binary: str, workdir: Path):
        to_read, self._to_write = map(_above_4, os.pipe())
        self._from_read, from_write = map(_above_4, os.pipe())
        self.log_path = workdir / "chromium.log"
        with open(self.log_path, "wb") as log:
            # bash moves the pipe ends to fds 3 and 4, where --remote-debugging-pipe expects them (dash, the
            # usual sh, takes single-digit fds only)
            moves = f"3<&{to_read} {to_read}<&- 4>&{from_write} {from_write}>&-"
            self.proc = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" {moves}', binary, *FLAGS,
                 f"--user-data-dir={workdir / 'profile'}", "about:blank"],
                pass_fds=(to_read, from_write), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(to_read)
        os.close(from_write)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_write, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._read(deadline, method))

    def _read(self, deadline: float, waiting_for: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_read], [], [], left)[0]:
                raise TimeoutError(f"no answer from Chromium to {waiting_for}; log: {self.log_tail()}")
            chunk = os.read(self._from_read, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited ({self.proc.poll()}); log: {self.log_tail()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(line)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_write)
        os.close(self._from_read)


def _above_4(fd: int) -> int:
    """The same pipe end on a descriptor >= 10, so moving it onto 3 or 4 cannot overwrite the other end."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def open_page(browser: Browser, page: Path) -> dict:
    """Load `page` in a fresh tab; its images, full-page screenshot, errors and requests."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):  # before navigating: nothing the page does is missed
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}, session)
    url = page.resolve().as_uri()
    browser.send("Page.navigate", {"url": url}, session)
    browser.wait_for("Page.loadEventFired", session)
    images = browser.send("Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True,
                                               "returnByValue": True}, session)["result"]["value"]
    size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": WIDTH, "height": min(int(size["height"]), 12000), "scale": 1}
    shot = browser.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                        session)
    mine = [e for e in browser.events if e.get("sessionId") == session]
    browser.send("Target.closeTarget", {"targetId": target})
    errors = [_describe(e) for e in mine if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    requests = [e["params"]["request"]["url"] for e in mine if e["method"] == "Network.requestWillBeSent"]
    return {"images": images, "png": base64.b64decode(shot["data"]), "errors": errors,
            "requests": [r for r in requests if r != url and not r.startswith("data:")]}


def _describe(event: dict) -> str:
    params = event["params"]
    if "entry" in params:
        return f"{params['entry']['level']}: {params['entry']['text']} ({params['entry'].get('url', '')})"
    if "exceptionDetails" in params:
        details = params["exceptionDetails"]
        return f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
    return f"console.{params['type']}: {[a.get('value', a.get('description')) for a in params['args']]}"


def _nnopt(*args: object) -> None:
    """`nnopt ARGS` in-process, as the CLI tests run it."""
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([str(a) for a in args])
    assert code == 0, f"nnopt {' '.join(map(str, args))}: {out.getvalue()}{err.getvalue()}"


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _chromium()
    if binary is None:
        pytest.skip(f"no Chromium binary on PATH ({', '.join(BINARIES)}); apt-get install chromium")
    return binary


@pytest.fixture(scope="module")
def runs(chromium, tmp_path_factory) -> dict[str, Path]:
    """Tiny real runs, made by the CLI: a few epochs, two optimizers on one seed, three trials."""
    root = tmp_path_factory.mktemp("browser")
    _nnopt("train", "--data", "iris", "--model", "mlp:8", "--epochs", "3", "--json", "--out", root / "train")
    _nnopt("compare", "--data", "iris", "--model", "mlp:8", "--optimizers", "sgd,adam", "--epochs", "3",
           "--seeds", "1", "--json", "--out", root / "compare")
    spec = root / "tune.yaml"
    spec.write_text(yaml.safe_dump({
        "data": "iris", "model": "mlp:{hidden}", "train": {"epochs": 3, "batch_size": 16},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
                  "hidden": {"type": "int", "low": 4, "high": 16}}}))
    _nnopt("tune", spec, "--trials", "3", "--seed", "0", "--json", "--out", root / "tune")
    return {kind: root / kind for kind in ("train", "compare", "tune")}


@pytest.mark.parametrize("kind", ["train", "compare", "tune"])
def test_report_renders_in_chromium(kind, runs, chromium, tmp_path):
    page = runs[kind] / "report.html"
    browser = Browser(chromium, tmp_path)
    try:
        seen = open_page(browser, page)
    finally:
        browser.close()
    (tmp_path / f"{kind}.png").write_bytes(seen["png"])  # kept with the test's files, to look at on failure

    assert seen["errors"] == [], seen["errors"]
    assert seen["requests"] == [], f"report.html must be self-contained; it asked for {seen['requests']}"
    n_img = len(re.findall(r"<img\b", page.read_text(encoding="utf-8")))
    assert n_img >= 1 and len(seen["images"]) == n_img
    for image in seen["images"]:
        assert image["decoded"] and image["width"] > 0 and image["height"] > 0, image

    shot = Image.open(io.BytesIO(seen["png"])).convert("RGB")
    assert shot.width == WIDTH and shot.height >= 300
    colours = shot.getcolors(maxcolors=1 << 16)  # None: more colours than that, certainly not blank
    if colours is not None:
        assert len(colours) > 50, f"{kind} report rendered as {len(colours)} colour(s)"
        assert max(count for count, _ in colours) < 0.97 * shot.width * shot.height, "the page is nearly blank"
