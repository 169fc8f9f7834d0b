"""HDR10 static metadata (mastering display, content light level): read from FFmpeg's side data,
written as the encoder parameters that put it back into the bitstream.

FFmpeg hands it over as its C structs: AVMasteringDisplayMetadata is 20 rationals (the R, G, B
primaries' x and y, the white point's x and y, min and max luminance) and two flags, all int32;
AVContentLightMetadata is two unsigned ints (MaxCLL, MaxFALL).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

# Transfer characteristics that mean HDR (FFmpeg's enum): SMPTE ST 2084 (PQ), ARIB STD-B67 (HLG).
HDR_TRANSFERS = {16, 18}
# Encoders that write HDR10 metadata, and the option that takes it.
HDR_ENCODERS = {"libx265": "x265-params", "libsvtav1": "svtav1-params"}


@dataclass(frozen=True)
class Hdr10:
    primaries: tuple[tuple[Fraction, Fraction], ...] | None  # R, G, B (x, y)
    white: tuple[Fraction, Fraction] | None
    luminance: tuple[Fraction, Fraction] | None  # (min, max) cd/m2
    max_cll: int | None = None
    max_fall: int | None = None


def _rationals(ints) -> list[Fraction]:
    return [Fraction(n, d) if d else Fraction(0) for n, d in zip(ints[0::2], ints[1::2])]


def parse(mastering: bytes | None, light: bytes | None) -> Hdr10 | None:
    """The side data's values; None when there is neither."""
    if not mastering and not light:
        return None
    primaries = white = luminance = None
    if mastering and len(mastering) >= 88:
        ints = struct.unpack("<22i", mastering[:88])
        r = _rationals(ints[:20])
        has_primaries, has_luminance = ints[20], ints[21]
        if has_primaries:
            primaries = ((r[0], r[1]), (r[2], r[3]), (r[4], r[5]))
            white = (r[6], r[7])
        if has_luminance:
            luminance = (r[8], r[9])
    cll = fall = None
    if light and len(light) >= 8:
        cll, fall = struct.unpack("<2I", light[:8])
    return Hdr10(primaries, white, luminance, cll, fall)


def encoder_params(codec: str, hdr: Hdr10) -> str:
    """The `x265-params` / `svtav1-params` text that writes `hdr` (empty for other encoders)."""
    parts = []
    if codec == "libx265":
        parts.append("hdr10=1")
        if hdr.primaries and hdr.white and hdr.luminance:
            (rx, ry), (gx, gy), (bx, by) = hdr.primaries

            def c(v):  # chromaticity in 1/50000
                return round(v * 50000)

            lo, hi = hdr.luminance
            parts.append(
                f"master-display=G({c(gx)},{c(gy)})B({c(bx)},{c(by)})R({c(rx)},{c(ry)})"
                f"WP({c(hdr.white[0])},{c(hdr.white[1])})L({round(hi * 10000)},{round(lo * 10000)})"
            )
        if hdr.max_cll is not None:
            parts.append(f"max-cll={hdr.max_cll},{hdr.max_fall}")
    elif codec == "libsvtav1":
        parts.append("enable-hdr=1")
        if hdr.primaries and hdr.white and hdr.luminance:
            (rx, ry), (gx, gy), (bx, by) = hdr.primaries

            def f(v):
                return f"{float(v):.4f}"

            lo, hi = hdr.luminance
            parts.append(
                f"mastering-display=G({f(gx)},{f(gy)})B({f(bx)},{f(by)})R({f(rx)},{f(ry)})"
                f"WP({f(hdr.white[0])},{f(hdr.white[1])})L({float(hi):.4f},{float(lo):.4f})"
            )
        if hdr.max_cll is not None:
            parts.append(f"content-light={hdr.max_cll},{hdr.max_fall}")
    return ":".join(parts)
