"""Pictures for models that see: preparation time per image, and the cache's memory over a run.

1. Preparation: photo-like JPEGs at COCO's size (640 x 480) and at a camera's (4000 x 3000)
   go through the picture step (EXIF, RGB, resize to image_max_side, JPEG) at 512 and 1024;
   prints the median and p90 milliseconds per image and the bytes sent.
2. Memory: a run over N images (default 10,000; each a distinct file, symlinked to a few
   dozen real pictures so the disk stays small), each picture asked for by three tasks and the
   judge, through one PictureCache; prints the bytes the cache holds against its bound, the
   files read per image, and the peak memory Python allocated while it ran (tracemalloc).
Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path


def photo(width: int, height: int, seed: int) -> object:
    """A picture with a photo's texture (gradients and noise), so the JPEGs have real sizes."""
    from PIL import Image as PILImage
    from PIL import ImageChops

    base = PILImage.radial_gradient("L").resize((width, height)).convert("RGB")
    noise = PILImage.effect_noise((width, height), 40 + seed % 20).convert("RGB")
    return ImageChops.add(base, noise, scale=2.0)


def write_pictures(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    paths = []
    for n in range(count):
        path = folder / f"{size[0]}x{size[1]}-{n}.jpg"
        photo(*size, n).save(path, quality=90)  # type: ignore[attr-defined]
        paths.append(path)
    return paths


def preparation(folder: Path, repeat: int) -> None:
    from visinstruct.core.models.pictures import prepare_picture

    print("picture preparation (ms per image; bytes sent)")
    for size in ((640, 480), (4000, 3000)):
        paths = write_pictures(folder, 4, size)
        source = sum(p.stat().st_size for p in paths) // len(paths)
        for side in (512, 1024):
            times, sent = [], 0
            for n in range(repeat):
                path = paths[n % len(paths)]
                started = time.perf_counter()
                picture = prepare_picture(path, side)
                times.append((time.perf_counter() - started) * 1000)
                sent = len(picture.data)
            times.sort()
            print(f"  {size[0]}x{size[1]} ({source:,} B file) -> max side {side}: "
                  f"median {statistics.median(times):.1f} ms, "
                  f"p90 {times[int(len(times) * 0.9)]:.1f} ms, {sent:,} B sent "
                  f"({sent / source:.2f} of the file)")


def memory(folder: Path, images: int, bound: int) -> None:
    from visinstruct.core.config import SourceConfig
    from visinstruct.core.models.pictures import PictureCache
    from visinstruct.core.records import Image

    real = write_pictures(folder, 40, (640, 480))
    linked = folder / "linked"
    linked.mkdir()
    for n in range(images):
        (linked / f"{n:012d}.jpg").symlink_to(real[n % len(real)])
    cache = PictureCache(SourceConfig(images_dir=linked), max_bytes=bound)
    tracemalloc.start()
    started = time.perf_counter()
    held_max = 0
    for n in range(images):
        image = Image(image_id=n, file_name=f"{n:012d}.jpg", width=640, height=480)
        for _ in range(4):  # three tasks and the judge of the image
            cache.get(image, 1024)
        held_max = max(held_max, cache.held_bytes)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"cache over {images:,} images (4 asks each, bound {bound:,} B)")
    print(f"  files read: {cache.reads:,} ({cache.reads / images:.2f} per image)")
    print(f"  held at most {held_max:,} B = {held_max / bound:.2f} of the bound; "
          f"{cache.held_count:,} pictures held at the end")
    print(f"  peak Python allocation {peak:,} B = {peak / bound:.2f} of the bound")
    print(f"  {elapsed / images * 1000:.1f} ms per image (4 asks, one preparation)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="images in the memory run")
    parser.add_argument("--repeat", type=int, default=40, help="preparations per size")
    parser.add_argument("--bound", type=int, default=64_000_000, help="the cache's bound, bytes")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="visinstruct-pictures-") as scratch:
        folder = Path(scratch)
        preparation(folder, options.repeat)
        memory(folder, options.images, options.bound)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
