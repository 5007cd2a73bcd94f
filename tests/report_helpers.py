"""Shared by the report tests: two demo runs made once per test session, and a headless
Chromium that renders a page to a screenshot and to its DOM text.

Not a conftest: the test modules import it explicitly, so it stays out of other tests' way.
"""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not on PATH (Debian: apt-get install chromium); "
    "the rendering of the HTML reports in a browser is not checked",
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_RUNS: dict[str, Path] = {}


def demo_runs(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two CPU demo runs over the same generated checkpoint and dataset, made on first call:
    "inductor" (the demo with the reference method) and "eager_random" (eager engine, random
    weights)."""
    if not _RUNS:
        from mmlubench.cli.demo import make_demo
        from mmlubench.config.config import CONFIG_DIR, load_config
        from mmlubench.run.runner import run_case

        root = factory.mktemp("demo_runs")
        make_demo(root)
        base = {"data_dir": str(root), "output_dir": str(root / "runs"), "progress": False}
        # eager_random's infer is the padded eager method: every prompt token computed.
        runs = {
            "inductor": {"engine": "inductor"},  # the demo itself runs shared-prefix
            "eager_random": {
                "engine": "eager",
                "random_weights": True,
                "engines": {"eager": {"method": "padded"}},
            },
        }
        for name, extra in runs.items():
            cfg = load_config(CONFIG_DIR / "demo.yaml", None, {**base, **extra, "run_name": name})
            _RUNS[name], _ = run_case(cfg)
    return dict(_RUNS)


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def page_text(markup: str) -> str:
    """The text a reader sees (tags dropped, entities decoded, whitespace collapsed)."""
    parser = _Text()
    parser.feed(markup)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def render(page: Path, tmp: Path) -> tuple[Path, str]:
    """Screenshot (1200x2000) and DOM text of `page` as headless Chromium renders it."""
    url = page.resolve().as_uri()
    png = tmp / (page.stem + ".screenshot.png")
    shot = _chromium([f"--screenshot={png}", "--window-size=1200,2000", url], tmp / "profile-shot")
    assert png.is_file(), f"chromium wrote no screenshot: {shot.stderr[-2000:]}"
    dom = _chromium(["--dump-dom", url], tmp / "profile-dom")
    assert dom.returncode == 0 and "<html" in dom.stdout, dom.stderr[-2000:]
    return png, page_text(dom.stdout)


def assert_real_png(path: Path, size: tuple[int, int] | None = None) -> None:
    """A PNG that decodes, has the expected size, and is not one flat color."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > 5000, f"{path} is suspiciously small ({len(data)} bytes)"
    try:
        from PIL import Image
    except ImportError:  # matplotlib reads PNG too
        import matplotlib.image
        import numpy as np

        pixels = matplotlib.image.imread(str(path))
        if size:
            assert (pixels.shape[1], pixels.shape[0]) == size
        colors = len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))
    else:
        with Image.open(path) as im:
            if size:
                assert im.size == size
            found = im.convert("RGB").getcolors(maxcolors=100_000)
            colors = 100_000 if found is None else len(found)
    assert colors > 16, f"{path} is (nearly) one flat color: {colors} colors"


def assert_self_contained(markup: str) -> None:
    """Nothing in the page would be fetched: no script, stylesheet link or remote URL."""
    assert "<script" not in markup.lower()
    assert "<link" not in markup.lower()
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', markup):
        assert attr.startswith(("data:", "#")), f"external reference: {attr[:80]}"
    assert "url(" not in markup and "@import" not in markup
