import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import torch

import envs  # noqa: F401  (registers the mp/ ids)

# Small networks train faster on one thread, and pytest-xdist already runs one worker per core.
torch.set_num_threads(1)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)


@pytest.fixture
def measured(record_property):
    """``measured("greedy return 500")``: a number a test measured, listed at the end of the run.

    ``make test-slow`` ends with these lines, so a change can be compared with the targets before and after
    (the properties travel with the reports, so pytest-xdist workers' numbers are listed too).
    """
    return lambda text: record_property("measured", text)


def pytest_terminal_summary(terminalreporter):
    lines = sorted({(report.nodeid, value) for reports in terminalreporter.stats.values() for report in reports
                    if getattr(report, "when", None) == "call"
                    for key, value in getattr(report, "user_properties", ()) if key == "measured"})
    if lines:
        terminalreporter.section("measured")
        for nodeid, text in lines:
            terminalreporter.write_line(f"{nodeid}: {text}")


# --- browser tests (the web viewers): headless Chromium driven by Playwright -------------------------------------
# A test that takes the `screenshot` fixture is a browser test: without chromium (env MP_CHROMIUM, else `chromium`
# on PATH) or Playwright it skips with the reason printed (-rs), unless MP_REQUIRE_BROWSER=1 (set by the Makefile
# where it installed chromium): then it fails. Chromium runs headless with software WebGL (SwiftShader).

CHROMIUM_ARGS = ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
ONLY_CANVAS = "* { visibility: hidden !important; } canvas { visibility: visible !important; }"
"""CSS that hides the page's panels and notices, so a screenshot holds only what WebGL drew."""


def _no_browser(reason: str):
    if os.environ.get("MP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and MP_REQUIRE_BROWSER=1 requires the browser tests to run")
    pytest.skip(f"{reason}: run make test as root, or apt-get install chromium (or set MP_CHROMIUM)")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of the Chromium that the browser tests drive (skip or fail as above when there is none)."""
    import shutil

    name = os.environ.get("MP_CHROMIUM", "chromium")
    path = shutil.which(name)
    if path is None:
        _no_browser(f"chromium not installed ({name!r} is not on PATH)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _no_browser("playwright not installed (pip install -e '.[test]')")
    return path


@pytest.fixture
def screenshot(chromium):
    """``screenshot(url, ready, timeout=90.0, size=(480, 360))``: open ``url`` in headless Chromium, wait for its
    canvas, and screenshot the canvas alone (panels hidden) every half second until ``ready(image)`` holds or
    ``timeout`` seconds pass (software WebGL on a busy machine takes seconds a frame); returns the last
    screenshot, ``uint8 [H, W, 3]``, and the page's console lines."""
    import time

    import imageio.v3 as iio
    import numpy as np
    from playwright.sync_api import sync_playwright

    def take(url, ready, timeout=90.0, size=(480, 360)):
        console = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": size[0], "height": size[1]})
                page.on("console", lambda message: console.append(message.text))
                page.goto(url)
                canvas = page.locator("canvas").first
                canvas.wait_for(timeout=1000 * timeout)
                page.add_style_tag(content=ONLY_CANVAS)
                deadline = time.monotonic() + timeout
                while True:
                    image = iio.imread(canvas.screenshot(timeout=1000 * timeout))[..., :3]
                    if ready(image) or time.monotonic() > deadline:
                        return np.asarray(image), console
                    time.sleep(0.5)
            finally:
                browser.close()

    return take


@pytest.fixture
def viewer_process(tmp_path):
    """``viewer_process(argv)``: start ``python -m <argv>`` (a ``view`` command) and wait for its line ``viewer at
    URL``; returns ``(url, stop)``, where ``stop()`` sends Ctrl-C (SIGINT) and returns the exit status and stderr.
    A server still running at the end of the test is killed."""
    import queue
    import re
    import signal
    import subprocess
    import sys
    import threading

    started = []

    def read_lines(stream, lines):
        for line in stream:
            lines.put(line)
        lines.put(None)  # the end of the output: the process exited

    def start(argv, timeout=120.0):
        log = tmp_path / f"viewer-{len(started)}.stderr"  # a file, not a pipe: a chatty server never blocks on it
        with open(log, "w") as errors:
            process = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, stderr=errors,
                                       text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        started.append(process)
        lines = queue.Queue()
        threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            process.wait()
            pytest.fail(f"{' '.join(argv)} printed no URL (status {process.returncode}); stderr: "
                        f"{log.read_text()[-2000:]}")
        match = re.fullmatch(r"viewer at (http://\S+)\n", line)
        assert match, f"expected 'viewer at URL' as the first line, got {line!r}"

        def stop(timeout=60.0):
            process.send_signal(signal.SIGINT)
            return process.wait(timeout), log.read_text()

        return match.group(1), stop

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def server():
    """A viser server on a free loopback port (the viewers' scenes are built into it), stopped after the test."""
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    yield server
    server.stop()


@pytest.fixture
def magenta():
    """``magenta(image)``: the pixels of a magenta (255, 0, 255) surface under any light in an ``[H, W, 3]`` uint8
    screenshot (red and blue high and alike, no green), as a ``[H, W]`` bool mask."""

    def pixels(image):
        r, g, b = (image[..., c].astype(int) for c in range(3))
        return (r > 100) & (b > 100) & (abs(r - b) < 40) & (g < 50)

    return pixels
