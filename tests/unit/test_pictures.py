"""The picture step: odd images in, a small upright RGB JPEG or one clear failure out."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from visinstruct.core.config import SourceConfig
from visinstruct.core.models.pictures import (
    MAX_FILE_BYTES,
    PictureCache,
    PictureError,
    fitted_size,
    picture_tokens,
    prepare_bytes,
    prepare_picture,
)
from visinstruct.core.records import Image


def encoded(image: PILImage.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decoded(data: bytes) -> PILImage.Image:
    picture = PILImage.open(io.BytesIO(data))
    picture.load()
    return picture


def check_jpeg(data: bytes, max_side: int) -> PILImage.Image:
    assert data.startswith(b"\xff\xd8\xff")
    picture = decoded(data)
    assert picture.format == "JPEG" and picture.mode == "RGB"
    assert max(picture.size) <= max_side
    return picture


MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "1", "I", "I;16", "F")
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")


def make_image(mode: str, width: int, height: int, seed: int) -> PILImage.Image:
    base = PILImage.radial_gradient("L").resize((width, height))
    if seed % 2:
        base = base.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
    if mode in ("I", "F"):
        return base.convert(mode)
    if mode == "I;16":
        return base.convert("I").point(lambda v: v * 200).convert("I;16")
    if mode == "PA":
        return base.convert("P").convert("PA")
    if mode == "P":
        picture = base.convert("RGB").convert("P")
        if seed % 3 == 0:
            picture.info["transparency"] = 0
        return picture
    return base.convert(mode)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(MODES), fmt=st.sampled_from(FORMATS),
       width=st.integers(1, 700), height=st.integers(1, 700), seed=st.integers(0, 5),
       max_side=st.sampled_from((64, 100, 333, 1024)))
def test_any_whole_image_becomes_a_jpeg_within_the_side(
        mode: str, fmt: str, width: int, height: int, seed: int, max_side: int) -> None:
    image = make_image(mode, width, height, seed)
    try:
        data = encoded(image, fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this mode in this format: nothing to feed
    picture = prepare_bytes(data, max_side)  # a whole, readable file never fails
    shown = check_jpeg(picture.data, max_side)
    assert (picture.width, picture.height) == shown.size
    # The aspect ratio survives the resize (to a pixel of rounding).
    if max(width, height) > max_side:
        assert max(shown.size) == max_side


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000))
def test_any_bytes_give_a_jpeg_or_a_clear_failure(data: bytes) -> None:
    try:
        check_jpeg(prepare_bytes(data, 256).data, 256)
    except PictureError as error:
        assert error.problem


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(1, 99), fmt=st.sampled_from(("PNG", "JPEG", "GIF", "WEBP")))
def test_truncated_files_fail_clearly_or_still_decode(cut: int, fmt: str) -> None:
    data = encoded(make_image("RGB", 300, 200, 1), fmt)
    try:
        check_jpeg(prepare_bytes(data[:len(data) * cut // 100], 128).data, 128)
    except PictureError as error:
        assert error.problem


def test_a_truncated_png_names_the_damage(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(encoded(make_image("RGB", 400, 300, 0), "PNG")[:-500])
    with pytest.raises(PictureError) as caught:
        prepare_picture(path, 1024)
    assert caught.value.path == path and "truncated" in caught.value.problem


def test_huge_tiny_and_missing_files(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(encoded(PILImage.new("L", (9000, 8000)), "PNG"))
    with pytest.raises(PictureError, match="too large to decode"):
        prepare_picture(big, 1024)
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encoded(PILImage.new("RGB", (1, 1), (255, 0, 0)), "PNG"))
    picture = check_jpeg(prepare_picture(tiny, 1024).data, 1024)
    assert picture.size == (1, 1)
    with pytest.raises(PictureError, match="not found"):
        prepare_picture(tmp_path / "absent.jpg", 1024)
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels")
    with pytest.raises(PictureError, match="not an image"):
        prepare_picture(text, 1024)


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(PictureError, match="larger than 50 MB"):
        prepare_picture(path, 1024)


def test_exif_orientation_is_applied() -> None:
    wide = PILImage.new("RGB", (400, 100), (0, 0, 255))
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    picture = prepare_bytes(encoded(wide, "JPEG", exif=exif.tobytes()), 1024)
    assert (picture.width, picture.height) == (100, 400)


def test_cmyk_and_alpha_become_rgb_with_white_behind_transparency() -> None:
    clear = PILImage.new("RGBA", (50, 50), (255, 0, 0, 0))
    pixel = decoded(prepare_bytes(encoded(clear, "PNG"), 64).data).getpixel((25, 25))
    assert isinstance(pixel, tuple) and min(pixel) > 240
    cmyk = PILImage.new("CMYK", (50, 50), (0, 255, 255, 0))  # red in ink
    red = decoded(prepare_bytes(encoded(cmyk, "JPEG"), 64).data).getpixel((25, 25))
    assert isinstance(red, tuple) and red[0] > 200 and red[1] < 60 and red[2] < 60


def coco(image_id: int, name: str) -> Image:
    return Image(image_id=image_id, file_name=name, width=10, height=10)


def test_the_cache_reads_each_file_once_and_stays_bounded(tmp_path: Path) -> None:
    for n in range(6):
        noisy = PILImage.effect_noise((300, 300), 80).convert("RGB")
        noisy.save(tmp_path / f"{n}.jpg", quality=95)
    cache = PictureCache(SourceConfig(images_dir=tmp_path), max_bytes=60_000)
    first = cache.get(coco(0, "0.jpg"), 256)
    threads = [threading.Thread(target=cache.get, args=(coco(0, "0.jpg"), 256))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.reads == 1 and cache.get(coco(0, "0.jpg"), 256) is first
    for n in range(6):
        cache.get(coco(n, f"{n}.jpg"), 256)
    assert cache.held_bytes <= 60_000
    assert cache.reads == 6


def test_the_cache_remembers_a_failure_and_names_the_missing_folder(tmp_path: Path) -> None:
    cache = PictureCache(SourceConfig(images_dir=tmp_path))
    with pytest.raises(PictureError) as caught:
        cache.get(coco(1, "gone.jpg"), 512)
    assert caught.value.path == tmp_path / "gone.jpg"
    assert cache.failure(coco(1, "gone.jpg")) is caught.value
    with pytest.raises(PictureError):
        cache.get(coco(1, "gone.jpg"), 512)
    assert cache.reads == 1
    gqa = Image(image_id=2, file_name="2.jpg", width=1, height=1, source="gqa")
    with pytest.raises(PictureError, match=r"gqa_images_dir"):
        cache.get(gqa, 512)


@pytest.mark.parametrize(("model", "size", "tokens"), [
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", (1024, 768), 1048),
    ("us.amazon.nova-lite-v1:0", (1000, 1000), 1600),
    ("us.meta.llama3-2-11b-instruct-v1:0", (1024, 768), 4 * 1601),
    ("us.meta.llama3-2-11b-instruct-v1:0", (500, 400), 1601),
    ("us.mistral.pixtral-large-2502-v1:0", (1024, 768), 64 * 48 + 48),
    ("Qwen/Qwen2.5-VL-7B-Instruct", (1024, 768), 37 * 28),
    ("some-served-model", (750, 1), 1),
])
def test_image_tokens_are_estimated_per_model_family(model: str, size: tuple[int, int],
                                                     tokens: int) -> None:
    assert picture_tokens(model, *size) == tokens


def test_a_picture_is_sent_at_most_max_side_and_never_enlarged() -> None:
    assert fitted_size(640, 480, 1024) == (640, 480)
    assert fitted_size(4000, 3000, 1024) == (1024, 768)
    assert fitted_size(300, 6000, 64) == (3, 64)


def test_smaller_sizes_of_a_held_picture_are_made_without_reading_the_file(
        tmp_path: Path) -> None:
    PILImage.new("RGB", (2000, 1000), (10, 200, 30)).save(tmp_path / "big.jpg")
    PILImage.new("RGB", (300, 200), (10, 200, 30)).save(tmp_path / "small.jpg")
    cache = PictureCache(SourceConfig(images_dir=tmp_path))
    big, small = coco(1, "big.jpg"), coco(2, "small.jpg")
    assert (cache.get(big, 1024).width, cache.get(big, 384).width) == (1024, 384)
    assert check_jpeg(cache.get(big, 384).data, 384).size == (384, 192)
    assert cache.get(small, 1024) is cache.get(small, 512)  # never shrunk: the same picture
    assert cache.get(small, 256).width == 256
    assert cache.reads == 2  # one read per file, whatever the sizes asked after the largest
    cache.get(big, 2048)  # larger than held: read again
    assert cache.reads == 3


def test_gqa_pictures_come_from_gqa_images_dir(tmp_path: Path) -> None:
    coco_dir, gqa_dir = tmp_path / "coco", tmp_path / "gqa"
    coco_dir.mkdir()
    gqa_dir.mkdir()
    PILImage.new("RGB", (40, 30), (0, 0, 255)).save(gqa_dir / "2354786.jpg")
    cache = PictureCache(SourceConfig(images_dir=coco_dir, gqa_images_dir=gqa_dir))
    gqa = Image(image_id=9, file_name="2354786.jpg", width=40, height=30, source="gqa")
    assert check_jpeg(cache.get(gqa, 64).data, 64).size == (40, 30)
    with pytest.raises(PictureError) as caught:
        cache.get(coco(9, "2354786.jpg"), 64)  # the same name is not looked for in GQA's folder
    assert caught.value.path == coco_dir / "2354786.jpg"
