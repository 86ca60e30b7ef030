"""A minimal JPEG Lossless encoder (ITU-T T.81 Annex H, process 14, first-order prediction) for test files.

pydicom 3 has no encoder for JPEG Lossless (1.2.840.10008.1.2.4.70) and the pylibjpeg-libjpeg plug-in only
decodes, so the tests write the codestream themselves: one greyscale component, predictor 1 (the sample to the
left), point transform 0, one Huffman table in which all 17 difference categories have 5-bit codes. Pure Python,
meant for images of a few thousand pixels.
"""

from __future__ import annotations

import struct

import numpy as np

_CATEGORIES = 17  # SSSS 0..16 for differences modulo 2**16
_CODE_LENGTH = 5  # 17 codes of 5 bits: 00000..10000, none all ones (T.81 C.2)


def encode_jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """A JPEG Lossless SV1 codestream of a 2-D unsigned array whose values fit in `precision` bits (2..16)."""
    if pixels.ndim != 2 or not 2 <= precision <= 16 or int(pixels.max()) >= 2**precision or pixels.min() < 0:
        raise ValueError("need a 2-D array of unsigned values that fit in `precision` bits (2..16)")
    rows, columns = pixels.shape
    frame = struct.pack(">BHHBBBB", precision, rows, columns, 1, 1, 0x11, 0)  # SOF3: 1 component, no subsampling
    counts = bytes(_CODE_LENGTH - 1) + bytes([_CATEGORIES]) + bytes(16 - _CODE_LENGTH)
    table = bytes([0x00]) + counts + bytes(range(_CATEGORIES))  # DHT: class 0, table 0
    scan = bytes([1, 1, 0x00, 1, 0, 0])  # SOS: 1 component, table 0, Ss = predictor 1, Se = 0, Ah/Al = 0
    return b"".join([
        b"\xff\xd8",
        _segment(0xC3, frame),
        _segment(0xC4, table),
        _segment(0xDA, scan),
        _entropy_coded(pixels.astype(np.int64), precision),
        b"\xff\xd9",
    ])


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _entropy_coded(pixels: np.ndarray, precision: int) -> bytes:
    bits = _BitWriter()
    rows, columns = pixels.shape
    for y in range(rows):
        for x in range(columns):
            bits.difference(int(pixels[y, x]) - _prediction(pixels, y, x, precision))
    return bits.finish()


def _prediction(pixels: np.ndarray, y: int, x: int, precision: int) -> int:
    """T.81 H.1.2.1: 2**(P-1) for the first sample, the sample above at a line start, else the one to the left."""
    if x == 0:
        return 2 ** (precision - 1) if y == 0 else int(pixels[y - 1, 0])
    return int(pixels[y, x - 1])


class _BitWriter:
    """Huffman code + extra bits per difference, packed MSB first with a 0x00 stuffed after every 0xFF byte."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.value = 0
        self.count = 0

    def write(self, value: int, length: int) -> None:
        self.value = (self.value << length) | (value & ((1 << length) - 1))
        self.count += length
        while self.count >= 8:
            self.count -= 8
            byte = (self.value >> self.count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)
        self.value &= (1 << self.count) - 1

    def difference(self, diff: int) -> None:
        diff = ((diff + 0x8000) & 0xFFFF) - 0x8000  # modulo 2**16, as -32768..32767 (T.81 H.1.2.1)
        category = abs(diff).bit_length()
        self.write(category, _CODE_LENGTH)  # symbol k has canonical code k
        if 0 < category < 16:  # category 16 (difference 32768) carries no extra bits
            self.write(diff if diff > 0 else diff - 1, category)

    def finish(self) -> bytes:
        if self.count:
            self.write((1 << (8 - self.count)) - 1, 8 - self.count)  # pad with 1-bits (T.81 F.1.2.3)
        return bytes(self.out)
