"""The demo page as a course companion: contents by notes chapter, a command per section, legible figures and
videos at their own size (envs/io/page.py, envs/io/figures.py)."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from envs.io.figures import PALETTE, figure_image, label_texts, learning_curves, save_figure
from envs.io.page import (
    CHAPTERS,
    FIGURE_WIDTH,
    MIN_TEXT_PX,
    WIDE_WIDTH,
    chapter_heading,
    command_line,
    write_index,
    write_section,
)
from envs.io.video import write_video


class _Page(HTMLParser):
    """Ids, links, contents headings, and per section: its text in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.toc_links: list[str] = []
        self.chapters: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.sections: dict[str, list[tuple[str, str]]] = {}  # id -> [(tag, text)]
        self._stack: list[str] = []
        self._section: str | None = None
        self._in_nav = False
        self._in_chapter = False
        self._code: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "nav":
            self._in_nav = True
        if self._in_nav and tag == "a":
            self.toc_links.append(a["href"] or "")
        if tag == "span" and a.get("class") == "chapter":
            self._in_chapter = True
        if tag == "section":
            self._section = a["id"]
            self.sections[self._section] = []
        if tag == "code":
            self._code = []
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False
        if tag == "span":
            self._in_chapter = False
        if tag == "section":
            self._section = None
        if tag == "code" and self._code is not None:
            if self._section is not None:  # a code block's whole text, as one entry
                self.sections[self._section].append(("code", "".join(self._code)))
            self._code = None
        if self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_chapter:
            self.chapters.append(data)
        if self._code is not None:
            self._code.append(data)
        elif self._section is not None and data.strip():
            self.sections[self._section].append((self._stack[-1] if self._stack else "", data))


def _parse(index: Path) -> _Page:
    page = _Page()
    page.feed(index.read_text())
    return page


def _sections(out: Path) -> dict[str, str]:
    """Five sections across four chapters, each with its command; folder -> command."""
    commands = {}
    for folder, section, title in (("nn", "1", "Foundations"), ("ae", "6", "Autoencoders"),
                                   ("cliff", "11.2", "Q-learning <vs> SARSA"), ("dp", "11", "Dynamic programming"),
                                   ("nerf", "12.4", "Radiance fields")):
        commands[folder] = f"python -m pkg demo --out 'outputs/demo' --only {folder} && echo '<done>'"
        write_section(out / folder, section, title, f"text of {folder}", [
            {"kind": "image", "file": "a.png", "caption": f"picture of {folder}"}], command=commands[folder])
    return commands


def test_contents_list_every_section_by_chapter_with_a_working_anchor(tmp_path):
    _sections(tmp_path)
    page = _parse(write_index(tmp_path))
    assert "how-to-read" in page.ids and "contents" in page.ids
    anchors = [link.removeprefix("#") for link in page.toc_links if link != "#contents"]
    assert sorted(anchors) == sorted(page.sections) and len(anchors) == 5  # one link per section...
    assert all(anchor in page.ids for anchor in anchors)  # ...to an element that exists
    assert len(set(page.ids)) == len(page.ids)
    # Grouped by the notes' chapters, in notes order, with their real titles; §11 and §11.2 share one heading.
    assert page.chapters == [chapter_heading(1), chapter_heading(6), chapter_heading(11), chapter_heading(12)]
    assert page.chapters[0].startswith("§1-4 Neural networks") and "Recurrent neural networks" in page.chapters[0]
    assert page.chapters[2] == f"§11 {CHAPTERS[11]}" == "§11 Reinforcement learning"
    assert anchors == ["nn", "ae", "dp", "cliff", "nerf"]


def test_every_section_ends_with_the_command_that_reproduces_it(tmp_path):
    commands = _sections(tmp_path)
    html = write_index(tmp_path).read_text()
    page = _parse(tmp_path / "index.html")
    for folder, command in commands.items():
        texts = page.sections[folder]
        code = [text for tag, text in texts if tag == "code"]
        assert code == [command], folder  # escaped in the HTML, the same text once parsed
        last_figure = max(i for i, (tag, _) in enumerate(texts) if tag == "figcaption")
        assert texts.index(("code", command)) > last_figure  # after the figures
    assert "&lt;done&gt;" in html and "<done>" not in html
    assert html.count("<pre><code>") == len(commands)


def test_write_section_refuses_a_missing_or_empty_command(tmp_path):
    items = [{"kind": "image", "file": "a.png", "caption": "c"}]
    with pytest.raises(TypeError, match="command"):
        write_section(tmp_path / "a", "1", "t", "x", items)  # type: ignore[call-arg]
    for command in ("", "   \n"):
        with pytest.raises(ValueError, match="command must be the shell command") as err:
            write_section(tmp_path / "a", "1", "t", "x", items, command=command)
        assert "\n" not in str(err.value).replace(repr(command), "")
    assert not (tmp_path / "a" / "section.json").exists()


def test_video_and_image_tags_carry_the_files_real_size(tmp_path):
    write_video([np.full((48, 80, 3), 30 * i, np.uint8) for i in range(3)], tmp_path / "v" / "small.mp4")
    write_video([np.zeros((100, 700, 3), np.uint8)] * 2, tmp_path / "v" / "strip.mp4")
    fig = Figure(figsize=(3.0, 2.0))
    fig.add_subplot().plot([0, 1])
    save_figure(fig, tmp_path / "v" / "plot.png")
    write_section(tmp_path / "v", "10", "Videos", "x", [
        {"kind": "video", "file": "small.mp4", "caption": "small"},
        {"kind": "video", "file": "strip.mp4", "caption": "wider than a column"},
        {"kind": "image", "file": "plot.png", "caption": "plot"}], command="python -m x")
    page = _parse(write_index(tmp_path))
    videos = [a for tag, a in page.tags if tag == "video"]
    assert [(v["width"], v["height"]) for v in videos] == [("80", "48"), ("700", "100")]
    figures = [a.get("class") for tag, a in page.tags if tag == "figure"]
    assert figures == [None, "wide", None]  # a video is never scaled down: one wider than a column spans the page
    image = next(a for tag, a in page.tags if tag == "img")
    assert (image["width"], image["height"]) == ("300", "200") == tuple(map(str, Image.open(tmp_path / "v" / "plot.png").size))


@pytest.mark.parametrize("wide, figsize", [(False, (10.0, 4.0)), (True, (20.0, 3.0)), (None, (16.0, 3.0))])
def test_save_figure_makes_every_label_legible_at_the_size_the_page_shows_it(tmp_path, wide, figsize):
    fig = Figure(figsize=figsize, layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot([0, 1, 2], [1, 3, 2], label="learned")
    left.legend(fontsize=5)
    left.set_xlabel("step", fontsize=6)
    left.tick_params(labelsize=4)
    left.text(1, 2, "note", fontsize=5)  # an annotation inside the axes keeps its size
    image = right.imshow(np.eye(3))
    fig.colorbar(image, ax=right, label="value")
    right.set_title("a title", fontsize=6)
    fig.suptitle("figure title", fontsize=7)
    path = save_figure(fig, tmp_path / "f.png", dpi=100, wide=wide)
    png = Image.open(path)
    assert png.size == (round(figsize[0] * 100), round(figsize[1] * 100))  # the size is the figure's own
    shown = min(png.size[0], WIDE_WIDTH if (wide or (wide is None and png.size[0] > 2 * FIGURE_WIDTH)) else FIGURE_WIDTH)
    smallest = float(png.text["min_label_px"])
    assert smallest * shown / png.size[0] >= MIN_TEXT_PX - 1e-6
    sizes = [t.get_fontsize() * 100 / 72 for t in label_texts(fig)]
    assert min(sizes) == pytest.approx(smallest, abs=0.01) and len(sizes) > 10
    assert left.texts[0].get_fontsize() == 5


def test_labels_already_legible_are_left_alone_and_video_frames_get_the_same_rule(tmp_path):
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    ax.set_title("t", fontsize=14)
    ax.plot([0, 1])
    save_figure(fig, tmp_path / "f.png")
    assert ax.title.get_fontsize() == 14 and ax.xaxis.get_ticklabels()[0].get_fontsize() == 10
    small = Figure(figsize=(8.0, 2.0))
    small.add_subplot().set_title("frame", fontsize=4)
    frame = figure_image(small)
    assert frame.shape == (200, 800, 3) and frame.dtype == np.uint8
    assert small.axes[0].title.get_fontsize() * 100 / 72 * FIGURE_WIDTH / 800 >= MIN_TEXT_PX - 1e-6


def test_learning_curves_take_the_palette_by_name():
    fig = learning_curves({"training": [1.0, 2.0, 3.0], "evaluation": [2.0, 3.0, 4.0], "other": [0.0, 1.0, 0.0]},
                          window=1, colors={"evaluation": PALETTE.learned, "training": PALETTE.training})
    lines = {line.get_label(): line.get_color() for line in fig.axes[0].lines}
    assert lines == {"training": PALETTE.training, "evaluation": PALETTE.learned, "other": "C2"}
    assert len(set(dataclasses.astuple(PALETTE))) == len(dataclasses.fields(PALETTE))  # one colour per role


@dataclasses.dataclass
class _Args:
    out: Path = Path("outputs/demo")
    steps: int = 10
    rate: float = 0.5
    full: bool = False
    deep: bool = True
    only: tuple[str, ...] = ()
    progress: bool = True


def test_command_line_spells_only_what_differs_and_parses_back():
    import tyro

    assert command_line("python -m x demo", _Args()) == "python -m x demo --out outputs/demo"
    args = _Args(out=Path("/tmp/a b"), steps=3, full=True, deep=False, only=("flows", "gans"), progress=False)
    command = command_line("python -m x demo", args)
    assert command == "python -m x demo --out '/tmp/a b' --steps 3 --full --no-deep --only flows gans"
    assert tyro.cli(_Args, args=shlex.split(command)[4:]) == dataclasses.replace(args, progress=True)
    with pytest.raises(ValueError, match="dataclass"):
        command_line("python -m x", {"steps": 3})


@pytest.mark.parametrize("module, prog, changes", [
    ("generative.demo", "python -m generative demo", {"flow_steps": 5, "only": ("flows",), "full": True}),
    ("agents.demo", "python -m agents demo", {"runs": 2, "deep": False, "only": ("cliff-walking",)}),
    ("vision3d.demo", "python -m vision3d demo", {"deepsdf_shapes": ("torus", "box"), "nerf_steps": 7}),
    ("bodies.demo", "python -m bodies demo", {"images": 40, "lgd_steps": 10}),
])
def test_every_package_demo_command_parses_back_with_its_own_command_line(module, prog, changes, monkeypatch):
    """The reproduce commands the demos write are accepted by the package's own parser, with the same settings."""
    import importlib

    demo = importlib.import_module(module)
    package = importlib.import_module(module.split(".")[0] + ".__main__")
    args = demo.Demo(out=Path("out dir"), **changes)
    parsed = []
    monkeypatch.setattr(demo, "run_demo", parsed.append)  # stands in for the run; the parser is the package's own
    assert package.main(shlex.split(command_line(prog, args))[3:]) == 0
    assert parsed == [args]


@pytest.mark.browser
def test_page_in_headless_chromium_shows_legible_figures_videos_at_their_size_and_working_contents(tmp_path, chromium):
    """Open a page in Chromium (tests/conftest.py's ``chromium``: skips, or fails under MP_REQUIRE_BROWSER=1, without
    one): every picture's smallest label is >= 10 px as shown, every video is shown at its frames' size, a contents
    link brings its section to the top, and the full page screenshots."""
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "sec"
    items = []
    for name, figsize, wide in (("column", (10.0, 4.0), False), ("small", (4.0, 3.0), False),
                                ("strip", (16.0, 2.5), True), ("huge", (21.0, 3.0), None)):
        fig = Figure(figsize=figsize, layout="constrained")
        ax = fig.add_subplot()
        ax.plot(np.arange(10), np.arange(10) ** 2, label=name)
        ax.legend(fontsize=6)
        ax.set(title=f"{name}: tiny labels", xlabel="x")
        ax.tick_params(labelsize=5)
        save_figure(fig, folder / f"{name}.png", wide=wide)
        items.append({"kind": "image", "file": f"{name}.png", "caption": name, **({"wide": True} if wide else {})})
    write_video([np.full((120, 160, 3), 20 * i, np.uint8) for i in range(8)], folder / "clip.mp4", fps=8)
    items.append({"kind": "video", "file": "clip.mp4", "caption": "a clip"})
    write_section(folder, "8", "Flows", "A section.", items, command="python -m generative demo --only flows")
    write_section(tmp_path / "later", "13", "Bodies", "Another.", items[1:2], command="python -m bodies demo")
    shutil.copyfile(folder / "small.png", tmp_path / "later" / "small.png")
    index = write_index(tmp_path)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(index.as_uri())
            page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 1)")
            shown = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth, "
                                  "i.clientWidth])")
            for src, natural, width in shown:
                smallest = float(Image.open(tmp_path / src).text["min_label_px"])
                assert width <= natural + 0.5, src  # never enlarged
                assert smallest * width / natural >= MIN_TEXT_PX - 0.05, (src, smallest, width, natural)
            videos = page.evaluate("[...document.querySelectorAll('video')].map(v => [v.videoWidth, v.videoHeight, "
                                   "v.clientWidth, v.clientHeight])")
            assert [(w, h) for w, h, _, _ in videos] == [(160, 120)]
            assert all((cw, ch) == (w, h) for w, h, cw, ch in videos)
            page.click("nav a[href='#later']")
            page.wait_for_timeout(200)
            top = page.evaluate("document.getElementById('later').getBoundingClientRect().top")
            assert abs(top) <= 2 or page.evaluate("window.innerHeight + window.scrollY >= document.body.scrollHeight - 2")
            code = page.inner_text("#sec pre code")
            assert code.strip() == "python -m generative demo --only flows"
            shot = page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    width, height = Image.open(tmp_path / "page.png").size
    assert len(shot) > 10_000 and width == 1440 and height > 900
    assert re.search(r"How to read this page", index.read_text())
