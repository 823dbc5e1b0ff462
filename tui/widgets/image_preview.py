"""The picture of a sample: textual-image where installed, else half blocks that work in any
terminal."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.widget import Widget

try:  # optional: real pixels (sixel, kitty, iTerm) where the terminal can show them
    from textual_image.widget import Image as TerminalImage
except ImportError:  # pragma: no cover - depends on what is installed
    TerminalImage = None

UPPER_HALF = "▀"


@lru_cache(maxsize=32)
def half_block_text(path: Path, width: int, height: int, mtime: float = 0.0) -> Text:
    """`path` scaled into width x height cells; each cell shows two pixels: '▀' fg over bg.

    `mtime` is only part of the cache key, so an image changed on disk is read again.
    """
    from PIL import Image as PILImage

    with PILImage.open(path) as picture:
        picture.draft("RGB", (width, height * 2))  # JPEG: decode at a fraction of the size
        rgb = picture.convert("RGB")
    # A cell is about twice as tall as wide, so two stacked pixels make a square-ish pair.
    rgb.thumbnail((max(1, width), max(2, height * 2)))
    pixels: Any = rgb.load()
    columns, rows = rgb.size
    text = Text(no_wrap=True, overflow="crop")
    for y in range(0, rows, 2):
        for x in range(columns):
            top = Color.from_rgb(*pixels[x, y])
            bottom = Color.from_rgb(*pixels[x, y + 1]) if y + 1 < rows else None
            text.append(UPPER_HALF, Style(color=top, bgcolor=bottom))
        if y + 2 < rows:
            text.append("\n")
    return text


class HalfBlockImage(Widget):
    """Draws an image file with coloured half blocks, scaled to the widget's size."""

    DEFAULT_CSS = """
    HalfBlockImage {
        width: 100%;
        height: 100%;
    }
    """

    def __init__(self, path: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.path = path

    def render(self) -> Text:
        size = self.content_size
        if size.width < 1 or size.height < 1:
            return Text("")
        try:
            mtime = self.path.stat().st_mtime
            return half_block_text(self.path, size.width, size.height, mtime)
        except (OSError, ValueError) as exc:  # unreadable or not an image: say so, don't crash
            return Text(f"cannot show {self.path.name}: {exc}", style="dim")


class ImagePreview(Container):
    """Shows `path` when given; hidden when there is no picture to show."""

    DEFAULT_CSS = """
    ImagePreview {
        height: 12;
        width: 100%;
        display: none;
    }
    ImagePreview.-shown {
        display: block;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.path: Path | None = None

    def compose(self) -> ComposeResult:
        return iter(())

    async def show(self, path: Path | None) -> None:
        """Show the picture at `path`, or hide the preview when None."""
        if path == self.path:
            return
        self.path = path
        await self.remove_children()
        self.set_class(path is not None, "-shown")
        if path is None:
            return
        if TerminalImage is not None:
            await self.mount(TerminalImage(str(path)))
        else:
            await self.mount(HalfBlockImage(path))
