"""Oracle for image decoding: OpenCV writes PNG/JPEG files and records how it decodes them.

Usage: python image_oracle.py DIR
Writes DIR/{rgb.png, grey.png, photo.jpg, grey.jpg, deep*.png (16-bit), truncated.png, truncated.jpg}, the files
with an EXIF orientation (oriented_N.jpg, oriented_N_be.jpg, oriented_N.png, oriented_N_late.png,
oriented_grey_N.jpg, N = 1...8, and bad_exif_*.jpg), BMP files (bmp_*.bmp: 1, 4 and 8 bits through a
palette, 24 and 32 bits, top-down; bad_*.bmp to be refused) and DIR/decoded.safetensors (OpenCV's RGB/grey uint8
arrays, read with imread's default flags, which turn a photo upright by its EXIF orientation).
"""
import struct
import sys
import zlib

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

d = sys.argv[1]
rng = np.random.default_rng(4)
yy, xx = np.mgrid[0:60, 0:80]
rgb = np.stack([(xx * 3) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
rgb[20:30, 10:50] = rng.integers(0, 256, (10, 40, 3), dtype=np.uint8)
grey = ((xx + 2 * yy) % 256).astype(np.uint8)
cv2.imwrite(f"{d}/rgb.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
cv2.imwrite(f"{d}/grey.png", grey)
cv2.imwrite(f"{d}/photo.jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
cv2.imwrite(f"{d}/grey.jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 90])
# 16-bit PNGs (scientific cameras, some label tools): random samples, so that keeping the high byte and
# rounding to the nearest 8-bit level differ.
cv2.imwrite(f"{d}/deep.png", rng.integers(0, 65536, (60, 80), dtype=np.uint16))
cv2.imwrite(f"{d}/deep_rgb.png", rng.integers(0, 65536, (60, 80, 3), dtype=np.uint16))
# A 0/255 mask saved with 16 bits: imread's high bytes make it all black (refused), and an all-black one.
cv2.imwrite(f"{d}/deep_mask.png", (grey > 100).astype(np.uint16) * 255)
cv2.imwrite(f"{d}/deep_black.png", np.zeros((60, 80), np.uint16))
# A CMYK JPEG (print workflows produce them), Adobe-inverted as Pillow writes it.
from PIL import Image as PILImage

PILImage.fromarray(rgb).convert("CMYK").save(f"{d}/cmyk.jpg", quality=90)
# JPEGs with header oddities libjpeg warns about but decodes whole (OpenCV reads them): JFIF revision
# 2.01; a stray zero byte before the quantisation tables. And a progressive JPEG header claiming
# 60000 × 60000 pixels, to be refused before its buffers are allocated.
photo = open(f"{d}/photo.jpg", "rb").read()
assert photo[6:11] == b"JFIF\0"
open(f"{d}/jfif201.jpg", "wb").write(photo[:11] + b"\x02\x01" + photo[13:])
dqt = photo.index(b"\xff\xdb")
open(f"{d}/stray.jpg", "wb").write(photo[:dqt] + b"\x00" + photo[dqt:])
cv2.imwrite(f"{d}/progressive.jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
prog = open(f"{d}/progressive.jpg", "rb").read()
sof = prog.index(b"\xff\xc2")
open(f"{d}/huge_progressive.jpg", "wb").write(prog[: sof + 5] + struct.pack(">HH", 60000, 60000) + prog[sof + 9 :])
for name in ("rgb.png", "photo.jpg"):
    data = open(f"{d}/{name}", "rb").read()
    open(f"{d}/truncated.{name.split('.')[1]}", "wb").write(data[: len(data) * 2 // 3])



def exif(orientation, little=True):
    """A TIFF block (IFD0: image width, then the orientation) as cameras write it."""
    e = "<" if little else ">"
    entries = struct.pack(e + "HHII", 0x0100, 4, 1, 80) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    return (b"II*\0" if little else b"MM\0*") + struct.pack(e + "IH", 8, 2) + entries + struct.pack(e + "I", 0)


def jpeg_with(data, payload):
    """The JPEG with an APP1 segment holding payload, after its JFIF APP0 segment."""
    assert data[2:4] == b"\xff\xe0"
    end = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:end] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[end:]


def png_with(data, tiff, late=False):
    """The PNG with an eXIf chunk after IHDR, or after the image data (late)."""
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    at = data.rfind(b"IEND") - 4 if late else 33
    return data[:at] + chunk + data[at:]


photo, grey_photo, png = (open(f"{d}/{n}", "rb").read() for n in ("photo.jpg", "grey.jpg", "rgb.png"))
oriented = {}
for o in range(1, 9):
    for name, data in ((f"oriented_{o}.jpg", jpeg_with(photo, b"Exif\0\0" + exif(o))),
                       (f"oriented_{o}_be.jpg", jpeg_with(photo, b"Exif\0\0" + exif(o, little=False))),
                       (f"oriented_grey_{o}.jpg", jpeg_with(grey_photo, b"Exif\0\0" + exif(o))),
                       (f"oriented_{o}.png", png_with(png, exif(o))),
                       (f"oriented_{o}_late.png", png_with(png, exif(o, little=False), late=True))):
        open(f"{d}/{name}", "wb").write(data)
        oriented[name] = "grey" in name
# EXIF blocks that say nothing usable: the photo is read as stored.
for name, payload in (("bad_exif_truncated.jpg", b"Exif\0\0" + exif(6)[:14]), ("bad_exif_value.jpg", b"Exif\0\0" + exif(9)),
                      ("bad_exif_offset.jpg", b"Exif\0\0II*\0\xff\xff\xff\x7f"), ("bad_exif_magic.jpg", b"Exif\0\0XX*\0\0\0\0\0")):
    open(f"{d}/{name}", "wb").write(jpeg_with(photo, payload))
    oriented[name] = False

# BMP, as crack datasets ship masks (CrackTree260, CRKWH100): OpenCV's and Pillow's writers, plus a 4-bit
# and a top-down file made here (neither writer makes them).
cv2.imwrite(f"{d}/bmp_rgb24.bmp", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
cv2.imwrite(f"{d}/bmp_grey8.bmp", grey)
PILImage.fromarray(rgb).convert("P").save(f"{d}/bmp_palette8.bmp")
PILImage.fromarray(((xx // 3 + yy // 2) % 2 * 255).astype(np.uint8)).convert("1").save(f"{d}/bmp_binary1.bmp")
PILImage.fromarray(rgb).convert("RGBA").save(f"{d}/bmp_rgb32.bmp")


def bmp4(path, indices, palette):
    h, w = indices.shape
    stride = (w * 4 + 31) // 32 * 4
    rows = b""
    for y in range(h - 1, -1, -1):
        packed = bytes((int(indices[y, x]) << 4) | int(indices[y, x + 1]) for x in range(0, w, 2))
        rows += packed + b"\0" * (stride - len(packed))
    pal = b"".join(bytes((b, g, r, 0)) for r, g, b in palette)
    offset = 14 + 40 + len(pal)
    head = b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 4, 0, len(rows), 2835, 2835, len(palette), 0)
    open(path, "wb").write(head + info + pal + rows)


bmp4(f"{d}/bmp_colour4.bmp", (xx + yy) % 16, [(i * 16, 255 - i * 16, i * 8) for i in range(16)])
data = open(f"{d}/bmp_rgb24.bmp", "rb").read()
offset, width, height = struct.unpack("<I", data[10:14])[0], *struct.unpack("<ii", data[18:26])
stride = (width * 3 + 3) // 4 * 4
rows = [data[offset + i * stride: offset + (i + 1) * stride] for i in range(height)]
open(f"{d}/bmp_topdown.bmp", "wb").write(data[:22] + struct.pack("<i", -height) + data[26:offset] + b"".join(reversed(rows)))
eight = open(f"{d}/bmp_grey8.bmp", "rb").read()
open(f"{d}/bad_rle.bmp", "wb").write(eight[:30] + struct.pack("<I", 1) + eight[34:])
open(f"{d}/bad_truncated.bmp", "wb").write(eight[: len(eight) // 2])
bmp = {"bmp_rgb24.bmp": False, "bmp_grey8.bmp": True, "bmp_palette8.bmp": False, "bmp_binary1.bmp": True, "bmp_rgb32.bmp": False,
       "bmp_colour4.bmp": False, "bmp_topdown.bmp": False}

decoded = {
    "rgb.png": cv2.cvtColor(cv2.imread(f"{d}/rgb.png"), cv2.COLOR_BGR2RGB),
    "grey.png": cv2.imread(f"{d}/grey.png", cv2.IMREAD_UNCHANGED),
    "photo.jpg": cv2.cvtColor(cv2.imread(f"{d}/photo.jpg"), cv2.COLOR_BGR2RGB),
    "grey.jpg": cv2.imread(f"{d}/grey.jpg", cv2.IMREAD_UNCHANGED),
    "deep.png": cv2.imread(f"{d}/deep.png", cv2.IMREAD_GRAYSCALE),
    "deep_rgb.png": cv2.cvtColor(cv2.imread(f"{d}/deep_rgb.png"), cv2.COLOR_BGR2RGB),
    "deep_black.png": cv2.imread(f"{d}/deep_black.png", cv2.IMREAD_GRAYSCALE),
    "cmyk.jpg": cv2.cvtColor(cv2.imread(f"{d}/cmyk.jpg"), cv2.COLOR_BGR2RGB),
    "jfif201.jpg": cv2.cvtColor(cv2.imread(f"{d}/jfif201.jpg"), cv2.COLOR_BGR2RGB),
    "stray.jpg": cv2.cvtColor(cv2.imread(f"{d}/stray.jpg"), cv2.COLOR_BGR2RGB),
}
for name, is_grey in list(oriented.items()) + list(bmp.items()):
    read = cv2.imread(f"{d}/{name}", cv2.IMREAD_GRAYSCALE if is_grey else cv2.IMREAD_COLOR)
    decoded[name] = read if is_grey else cv2.cvtColor(read, cv2.COLOR_BGR2RGB)
save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in decoded.items()}, f"{d}/decoded.safetensors")
print("written")
