"""Decoding and listing rules, checked against Keras's own MobileNetV2 preprocessing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fruits_spark.images import (
    ImageRejectedError,
    decode_image,
    is_image_path,
    label_of,
    reject_reason_from_listing,
)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_decode_matches_keras_mobilenet_v2_preprocessing() -> None:
    from keras.applications.mobilenet_v2 import preprocess_input

    pixels = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    content = _encode(Image.fromarray(pixels), "PNG")
    resized = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)

    np.testing.assert_allclose(decode_image(content, 64), preprocess_input(resized), atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA"])
def test_every_pixel_mode_becomes_rgb_in_model_range(mode: str) -> None:
    pixels = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"

    decoded = decode_image(_encode(image, fmt), 32)

    assert decoded.shape == (32, 32, 3)
    assert decoded.dtype == np.float32
    assert decoded.min() >= -1.0
    assert decoded.max() <= 1.0


def test_transparent_pixels_become_white_background() -> None:
    image = Image.new("RGBA", (40, 40), (255, 0, 0, 0))

    decoded = decode_image(_encode(image, "PNG"), 16)

    np.testing.assert_allclose(decoded, 1.0)


def test_large_jpeg_is_decoded_at_reduced_scale() -> None:
    image = Image.new("RGB", (8000, 6000), (10, 200, 30))

    decoded = decode_image(_encode(image, "JPEG"), 224)

    assert decoded.shape == (224, 224, 3)
    np.testing.assert_allclose(decoded[112, 112], np.array([10, 200, 30]) / 127.5 - 1, atol=0.05)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"just some text, not pixels", "not an image"),
        (_encode(Image.new("RGB", (100, 100), (1, 2, 3)), "JPEG")[:300], "truncated or corrupt"),
    ],
)
def test_undecodable_bytes_are_rejected_with_a_reason(content: bytes, reason: str) -> None:
    with pytest.raises(ImageRejectedError, match=reason):
        decode_image(content, 32)


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a/b.jpg", True), ("a/b.JPEG", True), ("a/b.Png", True), ("a/b.gif", False), ("a/jpg", False)],
)
def test_image_files_are_chosen_by_extension_in_any_case(path: str, expected: bool) -> None:
    assert is_image_path(path) is expected


def test_label_is_the_parent_folder_name() -> None:
    assert label_of("s3://bucket/images/Apple Red 1/r_0_100.jpg") == "Apple Red 1"
    assert label_of("file:/data/Test/Banana/sub/Pear 2/x.jpg") == "Pear 2"


@pytest.mark.parametrize(
    ("name", "size", "reason"),
    [
        ("x.jpg", 0, "empty file"),
        ("_x.jpg", 10, "hidden file name"),
        (".x.jpg", 10, "hidden file name"),
        ("x.jpg", 3 * 1024**3, "file too large"),
    ],
)
def test_files_rejected_from_their_listing(name: str, size: int, reason: str) -> None:
    assert reason in reject_reason_from_listing(f"file:/t/Kiwi/{name}", size)


def test_ordinary_file_needs_decoding_to_judge() -> None:
    assert reject_reason_from_listing("file:/t/Kiwi/0_100.jpg", 4000) is None


def test_every_byte_value_is_scaled_exactly_as_keras_arithmetic() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)

    decoded = decode_image(_encode(Image.fromarray(pixels), "PNG"), 16)

    np.testing.assert_array_equal(decoded, pixels.astype(np.float32) / 127.5 - 1.0)


def test_decoding_into_an_array_fills_and_returns_it() -> None:
    content = _encode(Image.new("RGB", (40, 30), (10, 200, 30)), "PNG")
    out = np.full((32, 32, 3), np.nan, dtype=np.float32)

    decoded = decode_image(content, 32, out=out)

    assert decoded is out
    np.testing.assert_array_equal(out, decode_image(content, 32))
