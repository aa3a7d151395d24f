"""A small QR reader for the tests: PNG bytes → text, written from ISO/IEC 18004.

Only what the tests need: a clean, axis-aligned, black-on-white 1-bit PNG; QR versions 1-6 (no
version-information blocks, at most one alignment pattern); numeric, alphanumeric and byte
segments. No error correction: a clean image has no errors to correct, and any bit read wrong
shows up as wrong text. Nothing here comes from segno, so a round trip checks segno and
``consent.qr`` rather than agreeing with itself.
"""

from __future__ import annotations

import struct
import zlib

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
# (total codewords, {level: (EC codewords per block, blocks)}) for versions 1-6.
_BLOCKS = {
    1: (26, {"L": (7, 1), "M": (10, 1), "Q": (13, 1), "H": (17, 1)}),
    2: (44, {"L": (10, 1), "M": (16, 1), "Q": (22, 1), "H": (28, 1)}),
    3: (70, {"L": (15, 1), "M": (26, 1), "Q": (18, 2), "H": (22, 2)}),
    4: (100, {"L": (20, 1), "M": (18, 2), "Q": (26, 2), "H": (16, 4)}),
    5: (134, {"L": (26, 1), "M": (24, 2), "Q": (18, 4), "H": (22, 4)}),
    6: (172, {"L": (18, 2), "M": (16, 4), "Q": (24, 4), "H": (28, 4)}),
}
_LEVEL_BITS = {1: "L", 0: "M", 3: "Q", 2: "H"}
_MASKS = [
    lambda r, c: (r + c) % 2 == 0,
    lambda r, c: r % 2 == 0,
    lambda r, c: c % 3 == 0,
    lambda r, c: (r + c) % 3 == 0,
    lambda r, c: (r // 2 + c // 3) % 2 == 0,
    lambda r, c: (r * c) % 2 + (r * c) % 3 == 0,
    lambda r, c: ((r * c) % 2 + (r * c) % 3) % 2 == 0,
    lambda r, c: ((r + c) % 2 + (r * c) % 3) % 2 == 0,
]


def decode_png(png: bytes) -> str:
    """The text in the QR code drawn in ``png``."""
    return decode_matrix(modules(pixels(png)))


def pixels(png: bytes) -> list[list[bool]]:
    """Rows of pixels, True for dark, from a 1-bit greyscale PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        crc = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])[0]
        assert zlib.crc32(kind + data) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">2I5B", header)
    assert (depth, colour, interlace) == (1, 0, 0), "expected 1-bit greyscale, not interlaced"
    raw = zlib.decompress(idat)
    stride = (width + 7) // 8
    rows: list[list[bool]] = []
    previous = bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        row = _unfilter(line[0], bytearray(line[1:]), previous)
        rows.append([not (row[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
        previous = row
    return rows


def _unfilter(kind: int, line: bytearray, above: bytearray) -> bytearray:
    # With 1-bit pixels the "pixel to the left" is the previous byte (bpp rounds up to 1).
    for i, value in enumerate(line):
        left = line[i - 1] if i else 0
        up, corner = above[i], (above[i - 1] if i else 0)
        if kind == 1:
            value += left
        elif kind == 2:
            value += up
        elif kind == 3:
            value += (left + up) // 2
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            value += left if pa <= pb and pa <= pc else up if pb <= pc else corner
        line[i] = value & 0xFF
    return line


def modules(image: list[list[bool]]) -> list[list[bool]]:
    """The module grid: the top-left finder pattern's first row is 7 modules wide."""
    top = next(y for y, row in enumerate(image) if any(row))
    left = image[top].index(True)
    run = next(x for x in range(left, len(image[top])) if not image[top][x]) - left
    assert run % 7 == 0, "finder pattern not found"
    size_px = run // 7
    right = max(x for x, dark in enumerate(image[top]) if dark)
    count = (right - left + 1) // size_px
    half = size_px // 2
    return [
        [image[top + r * size_px + half][left + c * size_px + half] for c in range(count)]
        for r in range(count)
    ]


def decode_matrix(grid: list[list[bool]]) -> str:
    size = len(grid)
    version = (size - 17) // 4
    assert size == 17 + 4 * version and 1 <= version <= 6, f"unsupported size {size}"
    level, mask = format_info(grid)
    reserved = _function_modules(size, version)
    bits: list[int] = []
    upward = True
    column = size - 1
    while column > 0:
        if column == 6:  # the vertical timing pattern has no data beside it
            column -= 1
        rows = range(size - 1, -1, -1) if upward else range(size)
        for r in rows:
            for c in (column, column - 1):
                if (r, c) not in reserved:
                    bits.append(int(grid[r][c] != _MASKS[mask](r, c)))
        upward = not upward
        column -= 2
    total, table = _BLOCKS[version]
    ec_per_block, blocks = table[level]
    words = [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, total * 8, 8)]
    return _segments(_deinterleave(words, total, ec_per_block, blocks), version)


def format_info(grid: list[list[bool]]) -> tuple[str, int]:
    """Error level and mask from the format bits beside the top-left finder."""
    places = (
        [(r, 8) for r in range(6)] + [(7, 8), (8, 8), (8, 7)] + [(8, c) for c in range(5, -1, -1)]
    )
    read = sum(int(grid[r][c]) << i for i, (r, c) in enumerate(places))
    best = min(range(32), key=lambda data: bin(_format_word(data) ^ read).count("1"))
    assert _format_word(best) == read, "format bits damaged"
    return _LEVEL_BITS[best >> 3], best & 7


def _format_word(data: int) -> int:
    """5 data bits + BCH(15,5) remainder, masked with 101010000010010."""
    remainder = data << 10
    for shift in range(4, -1, -1):
        if remainder & (1 << (shift + 10)):
            remainder ^= 0b10100110111 << shift
    return ((data << 10) | remainder) ^ 0b101010000010010


def _function_modules(size: int, version: int) -> set[tuple[int, int]]:
    taken: set[tuple[int, int]] = set()
    # Finders with separators and format bits: 9x9 top-left, 9x8 top-right, 8x9 bottom-left.
    taken |= {(r, c) for r in range(9) for c in range(9)}
    taken |= {(r, c) for r in range(9) for c in range(size - 8, size)}
    taken |= {(r, c) for r in range(size - 8, size) for c in range(9)}
    taken |= {(6, i) for i in range(size)} | {(i, 6) for i in range(size)}
    if version >= 2:  # one alignment pattern, centred 7 modules in from the bottom right
        centre = size - 7
        taken |= {
            (r, c) for r in range(centre - 2, centre + 3) for c in range(centre - 2, centre + 3)
        }
    return taken


def _deinterleave(words: list[int], total: int, ec_per_block: int, blocks: int) -> list[int]:
    data_total = total - ec_per_block * blocks
    short = data_total // blocks
    longer = data_total % blocks  # the last ``longer`` blocks hold one more data codeword
    lengths = [short + (1 if b >= blocks - longer else 0) for b in range(blocks)]
    out: list[list[int]] = [[] for _ in range(blocks)]
    it = iter(words)
    for i in range(short + 1):
        for b in range(blocks):
            if i < lengths[b]:
                out[b].append(next(it))
    return [w for block in out for w in block]


def _segments(data: list[int], version: int) -> str:
    bits = "".join(f"{w:08b}" for w in data)
    pos, text = 0, ""

    def take(n: int) -> int:
        nonlocal pos
        pos += n
        return int(bits[pos - n : pos], 2)

    assert version <= 9  # character-count field widths below hold for versions 1-9
    while pos + 4 <= len(bits):
        mode = take(4)
        if mode == 0:
            break
        if mode == 0b0001:  # numeric: groups of three digits in 10 bits
            count = take(10)
            while count >= 3:
                text += f"{take(10):03d}"
                count -= 3
            text += f"{take(7):02d}" if count == 2 else f"{take(4):01d}" if count == 1 else ""
        elif mode == 0b0010:  # alphanumeric: pairs in 11 bits
            count = take(9)
            for _ in range(count // 2):
                pair = take(11)
                text += _ALNUM[pair // 45] + _ALNUM[pair % 45]
            if count % 2:
                text += _ALNUM[take(6)]
        elif mode == 0b0100:  # bytes
            count = take(8)
            raw = bytes(take(8) for _ in range(count))
            try:
                text += raw.decode("utf-8")
            except UnicodeDecodeError:
                text += raw.decode("latin-1")
        else:
            raise AssertionError(f"unsupported mode {mode:04b}")
    return text
