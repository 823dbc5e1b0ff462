"""The pictures sent to models that see: found, read once, made small JPEGs, shared, bounded.

One place decides where an image's file is, what counts as an unusable one, and what a model
is sent: EXIF orientation applied, RGB, the longest side at most the model's
`image_max_side`, encoded as JPEG under Bedrock's per-image limit. A run's stages share one
`PictureCache`, so the tasks and the judge of an image read its file once.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from visinstruct.core.config import SourceConfig
from visinstruct.core.records import Image

MAX_FILE_BYTES = 50_000_000     # a file larger than this is refused unread
MAX_PIXELS = 64_000_000         # decoded pixels (width x height) above this are refused
MAX_SENT_BYTES = 3_750_000      # Bedrock's per-image limit; the others take more
CACHE_BYTES = 64_000_000        # pictures kept for the run's other stages
_QUALITIES = (85, 70, 55, 40)   # JPEG qualities tried until the picture fits MAX_SENT_BYTES


class PictureError(Exception):
    """A picture that cannot be sent: `path` and what is wrong with it (`problem`)."""

    def __init__(self, path: Path | None, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


@dataclass(frozen=True)
class Picture:
    """A prepared picture: JPEG bytes and their size in pixels."""

    data: bytes
    width: int
    height: int


# The [source] keys naming a pictures folder (a run reads them only to send pictures).
PICTURE_FOLDERS = ("images_dir", "gqa_images_dir")


def has_picture_folder(source: SourceConfig) -> bool:
    """Whether the source has any pictures folder (`images_dir`, `gqa_images_dir`) at all."""
    return any(getattr(source, key) is not None for key in PICTURE_FOLDERS)


def folder_key(image: Image) -> str:
    """The [source] key of the folder an image's picture is in: `gqa_images_dir` for GQA,
    else `images_dir`."""
    return "gqa_images_dir" if image.source == "gqa" else "images_dir"


def picture_folder(source: SourceConfig, image: Image) -> Path | None:
    """The folder an image's picture is in (`folder_key`), or None when it is not set."""
    folder = getattr(source, folder_key(image))
    return None if folder is None else Path(folder)


def picture_path(source: SourceConfig, image: Image) -> Path | None:
    """Where `image`'s picture should be, or None when its source has no pictures folder."""
    folder = picture_folder(source, image)
    return None if folder is None else folder / image.file_name


def prepare_picture(path: Path, max_side: int) -> Picture:
    """Read `path` and make the JPEG a model is sent; PictureError says why it cannot be."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise PictureError(path, "not found") from None
    except OSError as exc:
        raise PictureError(path, f"cannot be read ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise PictureError(path, f"larger than {MAX_FILE_BYTES // 1_000_000} MB ({size:,} bytes)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PictureError(path, f"cannot be read ({exc.strerror or exc})") from None
    return prepare_bytes(data, max_side, path)


def prepare_bytes(data: bytes, max_side: int, path: Path | None = None) -> Picture:
    """The JPEG a model is sent, made from an image file's bytes."""
    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width < 1 or height < 1:
                raise PictureError(path, "has no pixels")
            if width * height > MAX_PIXELS:
                raise PictureError(path, f"too large to decode ({width} x {height} pixels)")
            # JPEG: decode at a fraction of the size when that is still large enough.
            opened.draft("RGB", (max_side, max_side))
            opened.load()
            picture = _upright_rgb(opened)
    except PictureError:
        raise
    except UnidentifiedImageError:
        raise PictureError(path, "not an image file Pillow can read") from None
    except PILImage.DecompressionBombError:
        raise PictureError(path, "too large to decode") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # Truncated or damaged files fail while decoding, each format its own way.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PictureError(path, f"damaged or truncated ({reason[:120]})") from None
    picture.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    return Picture(_jpeg(picture, path), picture.width, picture.height)


def _upright_rgb(image: PILImage.Image) -> PILImage.Image:
    """The image turned as its EXIF orientation says, in RGB; transparency becomes white."""
    upright = ImageOps.exif_transpose(image) or image
    mode = upright.mode
    if mode == "P":
        upright = upright.convert("RGBA" if "transparency" in upright.info else "RGB")
    elif mode in ("I", "F") or mode.startswith("I;16"):
        upright = _to_eight_bits(upright)
    if upright.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = upright.convert("RGBA")
        canvas = PILImage.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return upright if upright.mode == "RGB" else upright.convert("RGB")


def _to_eight_bits(image: PILImage.Image) -> PILImage.Image:
    """A 16-bit, 32-bit or float grayscale image stretched onto 0..255."""
    wide = image.convert("F")
    extrema = cast(tuple[float, float], wide.getextrema())  # one band: (lowest, highest)
    low, span = extrema[0], (extrema[1] - extrema[0]) or 1.0
    return wide.point(lambda value: (value - low) * 255.0 / span).convert("L")


def _jpeg(image: PILImage.Image, path: Path | None) -> bytes:
    for quality in _QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=quality == _QUALITIES[0])
        if buffer.tell() <= MAX_SENT_BYTES:
            return buffer.getvalue()
    raise PictureError(path, f"still above {MAX_SENT_BYTES:,} bytes as a JPEG; "
                             "lower image_max_side")


class PictureCache:
    """Prepared pictures by (file, longest side), bounded in bytes, each file read once.

    A smaller size of a picture already held is made from the held one, not from the file
    (ask for the largest size first). Failures are remembered too, so an unusable file is
    reported once and never read again. Thread-safe: two workers asking for the same picture
    wait for one read.
    """

    def __init__(self, source: SourceConfig, max_bytes: int = CACHE_BYTES) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self._held: OrderedDict[tuple[Path, int], Picture] = OrderedDict()
        self._bytes = 0
        self._failed: dict[Path, PictureError] = {}
        self._largest: dict[Path, int] = {}   # the largest side held of each file
        self._reading: dict[tuple[Path, int], threading.Event] = {}
        self._lock = threading.Lock()
        self.reads = 0

    @staticmethod
    def _from_held(held: Picture | None, held_side: int, max_side: int,
                   path: Path) -> Picture | None:
        """`max_side`'s picture made from a held one of the same file, when it can be."""
        if held is None:
            return None
        longest = max(held.width, held.height)
        whole = longest < held_side  # never shrunk: the file's own size
        if longest <= max_side and whole:
            return held
        if longest >= max_side:
            return held if longest == max_side else prepare_bytes(held.data, max_side, path)
        return None

    @property
    def held_bytes(self) -> int:
        """Bytes of pictures held now (at most `max_bytes`, or one picture when larger)."""
        return self._bytes

    @property
    def held_count(self) -> int:
        """Pictures held now (each file at each size asked for counts once)."""
        return len(self._held)

    def failure(self, image: Image) -> PictureError | None:
        """The remembered failure of `image`'s picture, if reading it failed."""
        path = picture_path(self.source, image)
        return None if path is None else self._failed.get(path)

    def get(self, image: Image, max_side: int) -> Picture:
        """`image`'s picture at most `max_side` on its longest side; PictureError if unusable."""
        path = picture_path(self.source, image)
        if path is None:
            raise PictureError(None, f"no [source] {folder_key(image)} is set, so the picture "
                                     f"of image {image.image_id} ({image.file_name}) cannot be "
                                     "found")
        key = (path, max_side)
        while True:
            with self._lock:
                failed = self._failed.get(path)
                if failed is not None:  # a new exception each time: threads share none
                    raise PictureError(failed.path, failed.problem)
                held = self._held.get(key)
                if held is not None:
                    self._held.move_to_end(key)
                    return held
                waiting = self._reading.get(key)
                if waiting is None:
                    done = self._reading[key] = threading.Event()
                    largest = self._largest.get(path, 0)
                    larger = self._held.get((path, largest))
                    break
            waiting.wait()
        try:
            picture = self._from_held(larger, largest, max_side, path)
            if picture is None:
                with self._lock:
                    self.reads += 1
                picture = prepare_picture(path, max_side)
        except PictureError as error:
            with self._lock:
                self._failed[path] = error
                del self._reading[key]
            done.set()
            raise
        except BaseException:
            with self._lock:
                del self._reading[key]
            done.set()
            raise
        with self._lock:
            self._held[key] = picture
            self._bytes += len(picture.data)
            self._largest[path] = max(self._largest.get(path, 0), max_side)
            while self._bytes > self.max_bytes and len(self._held) > 1:
                (old_path, old_side), evicted = self._held.popitem(last=False)
                self._bytes -= len(evicted.data)
                if self._largest.get(old_path) == old_side:
                    del self._largest[old_path]
            del self._reading[key]
        done.set()
        return picture


# Input tokens a picture costs, by model family, from each family's published rule (estimates:
# the wire's own count replaces them once a call is answered).
def picture_tokens(model_name: str, width: int, height: int) -> int:
    """About how many input tokens a `width` x `height` picture costs the named model.

    `model_name` is the Bedrock model id or the served model's name; families not known here
    are counted like Claude (one token per 750 pixels).
    """
    name = model_name.lower()
    pixels = max(1, width) * max(1, height)
    if "pixtral" in name:  # a token per 16 x 16 patch, and one per row of patches
        rows = -(-height // 16)
        return rows * -(-width // 16) + rows
    if "qwen" in name:  # a token per 28 x 28 patch
        return max(4, -(-width // 28) * -(-height // 28))
    if "llama3-2" in name or "llama-3.2" in name or "llama3.2" in name:
        tiles = min(4, -(-width // 560) * -(-height // 560))  # 560-pixel tiles, at most 4
        return 1601 * tiles
    if "nova" in name:  # Amazon's figure: about 1,600 tokens for a 1,000 x 1,000 picture
        return max(100, pixels * 1600 // 1_000_000)
    return max(1, pixels // 750)  # Claude's rule, and the default


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size a `width` x `height` picture is sent at: its longest side at most `max_side`."""
    longest = max(width, height, 1)
    if longest <= max_side:
        return max(1, width), max(1, height)
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))
