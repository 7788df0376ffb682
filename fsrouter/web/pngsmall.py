"""Make a screenshot PNG small: at most 256 colours (a palette), deflated hard.

Chromium's PNGs of a plain page are RGB(A) and weigh 150-300 KB; the same picture with a
palette is a quarter of that. A page is mostly a few flat colours plus anti-aliased text,
so the 256 most common colours (after rounding each channel to a multiple of 4) with every
other colour mapped to its nearest of them look the same. Needs numpy (a test extra, like
the screenshot script that uses this).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    found, at = [], len(SIGNATURE)
    while at < len(data):
        (size,) = struct.unpack(">I", data[at:at + 4])
        found.append((data[at + 4:at + 8], data[at + 8:at + 8 + size]))
        at += 12 + size
    return found


def _pixels(data: bytes) -> Any:
    """An 8-bit RGB or RGBA PNG (not interlaced) as a height x width x 3 uint8 array."""
    import numpy as np

    chunks = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.int32)
    previous = np.zeros(width * channels, np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        out[y] = _unfilter(kind, line, previous, channels)
        previous = out[y]
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


def _unfilter(kind: int, line: Any, up: Any, bpp: int) -> Any:
    import numpy as np

    if kind == 0:
        return line
    if kind == 2:
        return (line + up) % 256
    result = line.copy()
    if kind == 1:  # Sub: a running sum per channel
        for channel in range(bpp):
            result[channel::bpp] = np.cumsum(line[channel::bpp]) % 256
        return result
    for x in range(len(line)):  # Average and Paeth depend on the pixel just decoded
        left = result[x - bpp] if x >= bpp else 0
        above = up[x]
        if kind == 3:
            result[x] = (line[x] + (left + above) // 2) % 256
        else:
            corner = up[x - bpp] if x >= bpp else 0
            guess = left + above - corner
            a, b, c = abs(guess - left), abs(guess - above), abs(guess - corner)
            near = left if a <= b and a <= c else above if b <= c else corner
            result[x] = (line[x] + near) % 256
    return result


def smaller(data: bytes) -> bytes:
    """``data`` (a PNG) with a palette of at most 256 colours, or ``data`` itself when that
    is not smaller."""
    import numpy as np

    pixels = _pixels(data)
    height, width, _ = pixels.shape
    rounded = (pixels.astype(np.int32) + 2) // 4 * 4
    rounded = np.minimum(rounded, 255)
    keys = (rounded[:, :, 0] << 16) | (rounded[:, :, 1] << 8) | rounded[:, :, 2]
    colours, inverse, counts = np.unique(keys.ravel(), return_inverse=True,
                                         return_counts=True)
    palette = colours[np.argsort(-counts)[:256]]
    rgb = np.stack([(palette >> 16) & 255, (palette >> 8) & 255, palette & 255], axis=1)
    every = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1)
    nearest = np.empty(len(colours), np.int64)
    for start in range(0, len(colours), 4096):  # bounded memory: 4096 x 256 distances
        part = every[start:start + 4096, None, :] - rgb[None, :, :]
        nearest[start:start + 4096] = np.argmin((part * part).sum(axis=2), axis=1)
    index = nearest[inverse].reshape(height, width).astype(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), index], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    out = SIGNATURE + _chunk(b"IHDR", header) \
        + _chunk(b"PLTE", rgb.astype(np.uint8).tobytes()) \
        + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    return out if len(out) < len(data) else data


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body \
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
