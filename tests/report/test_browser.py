"""report.html in a real browser: headless Chromium opens the report of every kind of run (train, compare,
lr-find, tune, search, compress, automl and the reports of its stages) and the plots of evaluate; each page must
render (a screenshot that is not one colour), log no error, request nothing (the report is one self-contained
file), and show no empty chart.

An empty chart is told this way. Every chart is an <img> of a PNG. In the page, each image is decoded and drawn
onto a canvas; it must show colour (a chart of grey axes, grid and text alone has none). nnopt's report PNGs also
carry a tEXt chunk (nnopt:plot-areas, written by nnopt.report._render.png_bytes from the drawn matplotlib figure)
giving each plot area's box, its background colour, how many data marks matplotlib drew inside it and the pixel
positions of the first few: every plot area must hold at least one mark, and at most of those positions the
decoded pixels must differ from the area's background (the marks are visible, not only counted). A report image
without that chunk fails: every chart of a report is drawn through that function.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands on fd 3, replies on
fd 4, NUL-separated JSON) with the standard library only. Without a Chromium binary the tests skip, except when
the CI environment variable is set: then they fail (.ci/run installs the Debian package chromium).
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
PLOT_AREAS = "nnopt:plot-areas"
# Each image decoded (decode() settles once the data: URI is decoded or has failed), drawn on a canvas and read
# back: its chromatic pixels (max - min channel > 60: not white, grey or black), its PLOT_AREAS text chunk, and
# for each plot area how many of the recorded mark positions show a pixel, within 2 px, that differs from the
# area's background (sum of channel differences > 48).
IMAGES_JS = r"""
(async () => {
  function text(bytes, key) {  // a PNG tEXt chunk's value: 8-byte signature, then length, type, data, crc
    const view = new DataView(bytes.buffer);
    for (let at = 8; at + 8 <= bytes.length; ) {
      const length = view.getUint32(at), type = String.fromCharCode(...bytes.slice(at + 4, at + 8));
      const data = bytes.slice(at + 8, at + 8 + length);
      if (type === "tEXt") {
        const nul = data.indexOf(0);
        if (String.fromCharCode(...data.slice(0, nul)) === key)
          return new TextDecoder("latin1").decode(data.slice(nul + 1));
      }
      at += 12 + length;
    }
    return null;
  }
  const out = [];
  for (const img of Array.from(document.images)) {
    const entry = {alt: img.alt, decoded: await img.decode().then(() => true, () => false),
                   width: img.naturalWidth, height: img.naturalHeight, chromatic: 0, areas: null};
    out.push(entry);
    if (!entry.decoded || !entry.width) continue;
    const canvas = document.createElement("canvas");
    canvas.width = entry.width; canvas.height = entry.height;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const px = context.getImageData(0, 0, entry.width, entry.height).data;
    for (let i = 0; i < px.length; i += 4)
      if (Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]) > 60) entry.chromatic++;
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    const chunk = text(bytes, "PLOT_AREAS");
    if (chunk === null) continue;
    entry.areas = JSON.parse(chunk);
    for (const area of entry.areas) {
      const face = [1, 3, 5].map(i => parseInt(area.face.slice(i, i + 2), 16));
      area.inked = area.at.filter(([x, y]) => {
        for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) {
          const u = x + dx, v = y + dy;
          if (u < 0 || v < 0 || u >= entry.width || v >= entry.height) continue;
          const i = 4 * (v * entry.width + u);
          if (Math.abs(px[i] - face[0]) + Math.abs(px[i + 1] - face[1]) + Math.abs(px[i + 2] - face[2]) > 48)
            return true;
        }
        return false;
      }).length;
    }
  }
  return out;
})()
""".replace("PLOT_AREAS", PLOT_AREAS)


def _chromium() -> str | None:
    return next((path for path in map(shutil.which, BINARIES) if path), None)


def _in_ci() -> bool:  # as tests/pg.py reads it
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


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
        reason = f"no Chromium binary on PATH ({', '.join(BINARIES)}); apt-get install chromium"
        if _in_ci():
            pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def runs(chromium, tmp_path_factory, digits_automl) -> Path:
    """Tiny real runs of every kind, made by the CLI: a few epochs, a few trials; the automl run is the digits run
    tests/pipeline/test_automl.py checks (tests/conftest.py), linked in as automl/."""
    root = tmp_path_factory.mktemp("browser")
    (root / "automl").symlink_to(digits_automl[0], target_is_directory=True)
    tiny = ("--data", "iris", "--model", "mlp:8")
    _nnopt("train", *tiny, "--epochs", "3", "--json", "--out", root / "train")
    _nnopt("compare", *tiny, "--optimizers", "sgd,adam", "--lr", "auto", "--epochs", "3", "--seeds", "1",
           "--json", "--out", root / "compare")
    _nnopt("lr-find", *tiny, "--steps", "60", "--json", "--out", root / "lr-find")
    spec = root / "tune.yaml"
    spec.write_text(yaml.safe_dump({
        "data": "iris", "model": "mlp:{hidden}", "train": {"epochs": 3, "batch_size": 16},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
                  "hidden": {"type": "int", "low": 4, "high": 16}}}))
    _nnopt("tune", spec, "--trials", "3", "--seed", "0", "--json", "--out", root / "tune")
    _nnopt("search", "--data", "iris", "--objectives", "val_accuracy,params", "--trials", "4", "--epochs", "2",
           "--seed", "0", "--json", "--out", root / "search")
    _nnopt("compress", root / "train", "--prune", "0.5", "--schedule", "gradual", "--finetune-epochs", "2",
           "--quantize", "int8", "--export", "onnx", "--json", "--out", root / "compress")
    _nnopt("evaluate", root / "train", "--json", "--out", root / "evaluate")
    _nnopt("train", "--data", "diabetes", "--model", "linear", "--epochs", "2", "--json", "--out",
           root / "regression")
    _nnopt("evaluate", root / "regression", "--json", "--out", root / "evaluate-regression")
    return root


def _pages(kind: str, root: Path) -> list[Path]:
    """The pages of one kind: its report.html; automl's stages' reports too; evaluate writes plots only, so each
    goes into a page as report.html embeds them (a data: URI)."""
    if kind == "automl":
        return sorted((root / "automl").rglob("report.html"), key=lambda p: len(p.parts))
    if kind != "evaluate":
        return [root / kind / "report.html"]
    pages = []
    for png in [root / "evaluate" / "confusion_matrix.png", root / "evaluate-regression" / "residuals.png"]:
        page = png.with_suffix(".html")
        page.write_text(f'<!doctype html><title>{png.name}</title><img alt="{png.stem}" '
                        f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">')
        pages.append(page)
    return pages


def empty_charts(images: list[dict], report: bool) -> list[str]:
    """What is wrong with each chart seen in the page: not decoded, no colour, or (a report's) a plot area
    without data."""
    problems = []
    for image in images:
        name = image["alt"] or "an image"
        if not (image["decoded"] and image["width"] > 0 and image["height"] > 0):
            problems.append(f"{name}: not decoded")
            continue
        if image["chromatic"] < 20:
            problems.append(f"{name}: no coloured pixel; only axes, grid and text")
        if not report:
            continue
        if not image["areas"]:
            problems.append(f"{name}: no {PLOT_AREAS} chunk, so not drawn by nnopt.report._render.png_bytes")
            continue
        for area in image["areas"]:
            if area["marks"] == 0:
                problems.append(f"{name}: the plot area at {area['box']} has no data mark")
            elif 2 * area["inked"] < len(area["at"]):
                problems.append(f"{name}: the plot area at {area['box']} shows only {area['inked']} of "
                                f"{len(area['at'])} sampled marks")
    return problems


KINDS = ["train", "compare", "lr-find", "tune", "search", "compress", "automl", "evaluate"]


@pytest.mark.parametrize("kind", KINDS)
def test_report_renders_in_chromium(kind, runs, chromium, tmp_path):
    pages = _pages(kind, runs)
    assert pages and all(page.is_file() for page in pages), pages
    if kind == "automl":  # the stages' reports: a compare, a search (+ its best/ train run), a train, a compress
        assert {p.parent.name for p in pages} == {"automl", "screen", "search", "best", "final", "compressed"}
    _check_pages(pages, runs, chromium, tmp_path, report=kind != "evaluate")


def test_an_automl_report_without_a_test_split_renders(chromium, penguins_automl_all_rows, tmp_path):
    """automl --test-fraction 0 (tests/conftest.py): no test scores to draw; every page of the run still renders
    with no empty chart (the final model's compression has no test score: its size chart is left out)."""
    run = penguins_automl_all_rows[0]
    pages = sorted(run.rglob("report.html"), key=lambda p: len(p.parts))
    assert {p.parent.name for p in pages} == {"automl", "screen", "search", "best", "final", "compressed"}
    _check_pages(pages, run.parent, chromium, tmp_path, report=True)


def _check_pages(pages: list[Path], root: Path, chromium: str, tmp_path: Path, report: bool) -> None:
    browser = Browser(chromium, tmp_path)
    try:
        seen = {page: open_page(browser, page) for page in pages}
    finally:
        browser.close()
    for page, view in seen.items():
        name = str(page.relative_to(root))
        (tmp_path / (name.replace("/", "_") + ".png")).write_bytes(view["png"])  # kept, to look at on failure
        assert view["errors"] == [], (name, view["errors"])
        assert view["requests"] == [], f"{name} must be self-contained; it asked for {view['requests']}"
        n_img = len(re.findall(r"<img\b", page.read_text(encoding="utf-8")))
        assert n_img >= 1 and len(view["images"]) == n_img, name
        assert empty_charts(view["images"], report=report) == [], name

        shot = Image.open(io.BytesIO(view["png"])).convert("RGB")
        assert shot.width == WIDTH and shot.height >= 300
        colours = shot.getcolors(maxcolors=1 << 16)  # None: more colours than that, certainly not blank
        if colours is not None:
            assert len(colours) > 50, f"{name} rendered as {len(colours)} colour(s)"
            assert max(count for count, _ in colours) < 0.97 * shot.width * shot.height, f"{name} is nearly blank"


def test_an_empty_chart_is_caught(chromium, tmp_path):
    """The criterion can fail: empty axes with a note in grey (what the automl report showed), a line drawn
    entirely outside its axes' limits, and a PNG without the plot-areas chunk are caught; a real chart is not."""
    from matplotlib.figure import Figure

    from nnopt.report._html import img
    from nnopt.report._plots import FigureData, Line, Panel
    from nnopt.report._render import build_figure, png_bytes, render_png

    def figure(*lines):
        return FigureData((Panel("score against size", "bytes", "score", lines, ylim=(0.0, 1.0)),), ncols=1,
                          size_in=(6.0, 4.0))

    empty = build_figure(figure())
    empty.axes[0].text(0.5, 0.5, "no variant with a size and a score", color="#777777",
                       transform=empty.axes[0].transAxes, ha="center")
    inside = Line("a", (1.0, 2.0, 3.0), (0.2, 0.5, 0.4), "#1f77b4", markers=True)
    outside = Line("b", (1.0, 2.0), (5.0, 6.0), "#ff7f0e")
    plain = Figure(figsize=(4, 3))
    plain.add_subplot().plot([1, 2], [3, 4], color="#2ca02c")
    buffer = io.BytesIO()
    plain.savefig(buffer, format="png")
    charts = {"empty": png_bytes(empty), "outside": render_png(figure(outside)), "no chunk": buffer.getvalue(),
              "good": render_png(figure(inside, outside))}
    page = tmp_path / "charts.html"
    page.write_text("<!doctype html><title>charts</title>" + "".join(img(png, alt) for alt, png in charts.items()))
    browser = Browser(chromium, tmp_path)
    try:
        seen = open_page(browser, page)
    finally:
        browser.close()
    problems = [re.sub(r"\[[\d, ]+\]", "[box]", p) for p in empty_charts(seen["images"], report=True)]
    assert problems == ["empty: no coloured pixel; only axes, grid and text",
                        "empty: the plot area at [box] has no data mark",
                        "outside: the plot area at [box] has no data mark",
                        f"no chunk: no {PLOT_AREAS} chunk, so not drawn by nnopt.report._render.png_bytes"]
