#!/usr/bin/env python
"""Screenshot of nerfstudio's web viewer on a short avatarpose run, taken with headless Chromium.

    python scripts/viewer_screenshot.py --data data/demo --output docs/viewer_demo.png \
        [--schedule avatar:60] [--port N] [-- <more ns-train arguments>]
    python scripts/viewer_screenshot.py --load-config outputs/.../config.yml --output viewer.png

Starts ``ns-train avatarpose-lite --vis viewer`` on a free port and waits until the
viewer answers and the training has finished (the viewer keeps serving), or, with
``--load-config``, serves a finished run with ``ns-viewer`` instead. Then it opens
the viewer page in headless Chromium (``--headless --no-sandbox --disable-gpu``,
WebGL through SwiftShader) over the DevTools protocol, waits until the rendered
page stops changing and saves a PNG. Then it stops Chromium and the training
process (both started here). Needs the Debian packages ``chromium`` (and, for
selenium users, ``chromium-driver``): ``apt-get install -y chromium chromium-driver``.
No Python packages beyond nerfstudio's own (websockets comes with viser, pillow with
nerfstudio).

Exit status 0 and the PNG's path on success; a message and status 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from collections.abc import Callable

import numpy as np

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--hide-scrollbars",
                  "--no-first-run", "--no-default-browser-check", "--mute-audio")


class ScreenshotError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) binary, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float, what: str, alive: subprocess.Popen | None = None,
             log: Path | None = None, interval: float = 1.0) -> None:
    """Poll `check` until it holds; fail after `timeout` s or when `alive` exits (showing the log's tail)."""
    deadline = time.time() + timeout
    while not check():
        if alive is not None and alive.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise ScreenshotError(f"the process exited ({alive.returncode}) while waiting for {what}:\n{tail}")
        if time.time() > deadline:
            raise ScreenshotError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def ns_command(name: str, module: str) -> list[str]:
    """A nerfstudio command (ns-train, ns-viewer) of this Python environment."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", f"from {module} import entrypoint; entrypoint()"]


def training_command(data: Path, port: int, output_dir: Path, schedule: list[str], method: str,
                     extra: list[str]) -> list[str]:
    steps = sum(int(entry.split(":")[1]) for entry in schedule)
    return ns_command("ns-train", "nerfstudio.scripts.train") + [
        method, "--data", str(data), "--output-dir", str(output_dir), "--vis", "viewer",
        "--viewer.websocket-port", str(port), "--viewer.quit-on-train-completion", "False",
        "--max-num-iterations", str(steps), "--pipeline.schedule", *schedule, *extra,
    ]


def viewer_command(load_config: Path, port: int, extra: list[str]) -> list[str]:
    # ns-viewer replaces the method's viewer settings with its own defaults: depth compositing back
    # off, or the skeletons inside the bodies are hidden
    return ns_command("ns-viewer", "nerfstudio.scripts.viewer.run_viewer") + [
        "--load-config", str(load_config), "--viewer.websocket-port", str(port),
        "--viewer.default-composite-depth", "False", *extra,
    ]


def start(command: list[str], log: Path) -> subprocess.Popen:
    print("[screenshot]", " ".join(command), flush=True)
    # this checkout's package first, as for the scripts' own imports
    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", PYTHONPATH=path)
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(process: subprocess.Popen | None) -> None:
    """Stop a process this script started, with its children (its own session)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=15)


def png_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class DevTools:
    """The few DevTools-protocol calls needed, over one page's websocket."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise ScreenshotError(f"{method}: {message['error']}")
                return message.get("result", {})


# the control panel's custom elements (the pose overlays) sit at its end: show them
SCROLL_PANELS_TO_END = """document.querySelectorAll('*').forEach(e => {
  const style = getComputedStyle(e);
  if (e.scrollHeight > e.clientHeight + 8 && /(auto|scroll)/.test(style.overflowY)) e.scrollTop = e.scrollHeight;
});"""
RESOLUTION = re.compile(r"Resolution:\s*(\d+)\s*[x\u00d7]\s*(\d+)\s*px")


def rendered_resolution(text: str) -> int:
    """The larger side of the last render nerfstudio's viewer reports in its stats ('Resolution: 512x399px'),
    0 before the first render."""
    match = RESOLUTION.search(text)
    return max(int(match.group(1)), int(match.group(2))) if match else 0


def _wait_and_capture(tools: DevTools, url: str, width: int, height: int, settle: float, timeout: float,
                      max_res: int, interval: float) -> tuple[np.ndarray, bytes]:
    tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    tools.call("Page.enable")
    tools.call("Page.navigate", url=url)
    start, previous, same = time.time(), None, 0
    while True:
        time.sleep(interval)
        # the stats first: a screenshot taken after they report the full render shows it
        text = tools.call("Runtime.evaluate", expression="document.body.innerText",
                          returnByValue=True).get("result", {}).get("value", "")
        full = rendered_resolution(str(text)) >= max_res
        tools.call("Runtime.evaluate", expression=SCROLL_PANELS_TO_END)
        png = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
        pixels = png_pixels(png)
        same = same + 1 if full and previous is not None and np.array_equal(pixels, previous) else 0
        previous = pixels if full else None
        elapsed = time.time() - start
        if (elapsed >= settle and same >= 2) or elapsed >= timeout:
            if not full:
                print(f"[screenshot] no full-resolution render after {timeout:.0f} s; saving the page as it is")
            return pixels, png


def shoot(chromium: str, url: str, output: Path, width: int, height: int, settle: float, timeout: float,
          max_res: int = 512, interval: float = 4.0) -> np.ndarray:
    """Open `url` in headless Chromium, wait until nerfstudio's viewer reports a render at `max_res` and
    the page stops changing (after at least `settle` s; at most `timeout` s), save a PNG."""
    debug_port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="avatarpose-chromium-"))
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--remote-debugging-port={debug_port}",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        targets_url = f"http://127.0.0.1:{debug_port}/json/list"
        wait_for(lambda: http_ok(targets_url), 60, "Chromium's DevTools endpoint", alive=browser)
        with urllib.request.urlopen(targets_url, timeout=5) as response:
            page = next(t for t in json.load(response) if t.get("type") == "page")
        from websockets.sync.client import connect

        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as socket_:
            pixels, png = _wait_and_capture(DevTools(socket_), url, width, height, settle, timeout, max_res, interval)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(png)
        return pixels
    finally:
        stop(browser)
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="sequence folder (EasyMocap / AvatarPose layout) to train on")
    source.add_argument("--load-config", type=Path, help="a finished run's config.yml, shown with ns-viewer")
    parser.add_argument("--output", type=Path, default=Path("viewer.png"), help="PNG to write")
    parser.add_argument("--method", default="avatarpose-lite")
    parser.add_argument("--schedule", nargs="+", default=["avatar:60"], help="phases, as --pipeline.schedule")
    parser.add_argument("--port", type=int, default=None, help="viewer port (default: a free one)")
    parser.add_argument("--run-dir", type=Path, default=None, help="ns-train output dir (default: a temporary one)")
    parser.add_argument("--size", default="1280x800", help="browser window, WxH")
    parser.add_argument("--settle", type=float, default=40.0,
                        help="seconds to give the viewer to render before the page must stop changing")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the training run")
    parser.add_argument("--render-timeout", type=float, default=300.0,
                        help="seconds for the viewer's full-resolution render and the page to settle")
    parser.add_argument("--max-res", type=int, default=512, help="the viewer's 'Max res' (its default: 512)")
    parser.add_argument("extra", nargs="*", help="more ns-train (or ns-viewer) arguments, after --")
    args = parser.parse_args(argv)

    chromium = find_chromium()
    if chromium is None:
        print("[screenshot] no Chromium found; install it with: apt-get install -y chromium chromium-driver")
        return 1
    width, height = (int(v) for v in args.size.lower().split("x"))
    port = args.port or free_port()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="avatarpose-viewer-run-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / ("ns-viewer.log" if args.load_config is not None else "ns-train.log")
    server = None
    try:
        if args.load_config is not None:
            server = start(viewer_command(args.load_config, port, args.extra), log)
        else:
            server = start(training_command(args.data, port, run_dir, args.schedule, args.method, args.extra), log)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(url), args.timeout, f"the viewer at {url}", alive=server, log=log)
        if args.load_config is None:
            print(f"[screenshot] viewer up at {url}; waiting for the training to finish", flush=True)
            wait_for(lambda: "Training Finished" in log.read_text(errors="replace"), args.timeout,
                     "the end of training", alive=server, log=log, interval=2.0)
        print("[screenshot] opening the viewer in headless Chromium", flush=True)
        pixels = shoot(chromium, url, args.output, width, height, args.settle, args.render_timeout, args.max_res)
    except ScreenshotError as err:
        print(f"[screenshot] {err}")
        return 1
    finally:
        stop(server)
    print(f"[screenshot] wrote {args.output} ({pixels.shape[1]}x{pixels.shape[0]}, pixel std "
          f"{pixels.astype(np.float64).std():.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
