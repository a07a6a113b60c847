#!/usr/bin/env python3
"""Draws the demo keyframes in assets/, using only the standard library: first.png and last.png (a
sun setting over the sea) for `inbetween generate`, and assets/story/ (a day over the sea: dawn,
noon, sunset, night) for `inbetween story --keyframes-dir assets/story`. The PNGs are committed;
run this again only to change them."""
import math
import os
import struct
import zlib

W, H = 640, 360


def scene(sun_y, sky_top, sky_bottom, sun_x=W * 0.5, stars=False):
    rows = []
    horizon = int(H * 0.62)
    for y in range(H):
        row = bytearray()
        for x in range(W):
            if y < horizon:
                t = y / horizon
                c = [sky_top[i] * (1 - t) + sky_bottom[i] * t for i in range(3)]
            else:
                t = (y - horizon) / (H - horizon)
                c = [20 + 30 * (1 - t), 50 + 40 * (1 - t), 90 + 50 * (1 - t)]
                # the sun's reflection
                if 0 < sun_y < horizon and abs(x - sun_x) < 40 * (1 - t) + 8 and (y // 3) % 2 == 0:
                    c = [min(255, v + 90) for v in c]
            # a fixed scatter of stars in a night sky
            if stars and y < horizon and ((x * 73856093) ^ (y * 19349663)) % 1009 == 0:
                c = [235, 235, 250]
            d = math.hypot(x - sun_x, y - sun_y)
            if d < 38 and y < horizon:
                c = [255, 220, 120]
            elif d < 70 and y < horizon:
                k = (70 - d) / 32
                c = [c[0] + (255 - c[0]) * k * 0.6, c[1] + (200 - c[1]) * k * 0.6, c[2] * (1 - k * 0.6)]
            row += bytes(max(0, min(255, int(v))) for v in c)
        rows.append(bytes(row))
    return rows


def write_png(path, rows):
    raw = b"".join(b"\x00" + r for r in rows)
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets")
write_png(os.path.join(here, "first.png"), scene(90, (70, 130, 210), (190, 210, 235)))
write_png(os.path.join(here, "last.png"), scene(215, (40, 30, 90), (240, 120, 60)))

story = os.path.join(here, "story")
os.makedirs(story, exist_ok=True)
write_png(os.path.join(story, "1-dawn.png"), scene(200, (60, 50, 120), (250, 170, 120), sun_x=W * 0.2))
write_png(os.path.join(story, "2-noon.png"), scene(70, (40, 110, 220), (170, 205, 240)))
write_png(os.path.join(story, "3-sunset.png"), scene(205, (40, 30, 90), (240, 120, 60), sun_x=W * 0.8))
write_png(os.path.join(story, "4-night.png"), scene(-200, (5, 8, 30), (25, 35, 80), stars=True))
