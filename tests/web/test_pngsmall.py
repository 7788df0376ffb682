"""fsrouter.web.pngsmall: the screenshots' PNGs decoded whatever row filters the encoder
chose, and the palette copy looks like the original."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from fsrouter.web.pngsmall import SIGNATURE, _chunk, _chunks, _pixels, smaller


def paeth(left: int, above: int, corner: int) -> int:
    guess = left + above - corner
    a, b, c = abs(guess - left), abs(guess - above), abs(guess - corner)
    return left if a <= b and a <= c else above if b <= c else corner


def encoded(image: np.ndarray, kinds: list[int], alpha: bool = False) -> bytes:
    """``image`` (h x w x 3) as a PNG whose row y uses filter ``kinds[y % len(kinds)]``."""
    height, width, _ = image.shape
    if alpha:
        image = np.concatenate([image, np.full((height, width, 1), 255, np.uint8)], axis=2)
    bpp = image.shape[2]
    rows = image.reshape(height, width * bpp).astype(int)
    raw = bytearray()
    for y in range(height):
        kind = kinds[y % len(kinds)]
        up = rows[y - 1] if y else np.zeros(width * bpp, int)
        line = []
        for x, value in enumerate(rows[y]):
            left = rows[y][x - bpp] if x >= bpp else 0
            corner = up[x - bpp] if x >= bpp else 0
            base = [0, left, up[x], (left + up[x]) // 2, paeth(left, up[x], corner)][kind]
            line.append((value - base) % 256)
        raw += bytes([kind, *line])
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw))) \
        + _chunk(b"IEND", b"")


def palette_pixels(data: bytes) -> np.ndarray:
    chunks = dict(_chunks(data))
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    palette = np.frombuffer(chunks[b"PLTE"], np.uint8).reshape(-1, 3)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert (rows[:, 0] == 0).all()
    return palette[rows[:, 1:]]


@pytest.mark.parametrize("alpha", [False, True])
def test_every_row_filter_decodes(alpha: bool):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (10, 9, 3), dtype=np.uint8)
    assert (_pixels(encoded(image, [0, 1, 2, 3, 4], alpha)) == image).all()


def test_the_palette_copy_is_smaller_and_close():
    # A page-like picture: flat colours, and "text": pixels in 40 shades of grey.
    rng = np.random.default_rng(3)
    image = np.full((60, 200, 3), 255, np.uint8)
    image[10:20, :, :] = [5, 80, 174]
    image[30:50, :, :] = (rng.integers(0, 40, (20, 200, 1)) * 6).astype(np.uint8)
    original = encoded(image, [1, 4])
    small = smaller(original)
    assert len(small) < len(original)
    difference = np.abs(palette_pixels(small).astype(int) - image.astype(int))
    assert difference.max() <= 4  # rounding to multiples of 4, all colours fit in 256
