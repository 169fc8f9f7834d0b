"""Synthetic test media made with PyAV and OpenCV, and a stand-in network that blends linearly."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


class BlendNet(torch.nn.Module):
    """Any-timestep 'network' whose frame at t is (1 - t) * a + t * b: fast and predictable."""

    family = "v4"
    pad_base = 32

    def forward(self, a, b, t, scale=1.0):
        t = t.view(-1, 1, 1, 1).to(a.dtype)
        return a * (1 - t) + b * t


class SlowBlendNet(BlendNet):
    """BlendNet taking `delay` seconds a call: a run long enough to be interrupted in the middle."""

    def __init__(self, delay: float = 0.02):
        super().__init__()
        self.delay = delay

    def forward(self, a, b, t, scale=1.0):
        import time

        time.sleep(self.delay)
        return super().forward(a, b, t, scale)


def blend_engine(batch_size: int = 2):
    from rife_cli.engine import Interpolator

    return Interpolator(
        model="blend", device="cpu", precision="fp32", network=BlendNet(), batch_size=batch_size
    )


def interpolate_blended(src, out=None, **options):
    """interpolate_video with the linear-blend stand-in for the network."""
    from rife_cli.pipeline import interpolate_video

    return interpolate_video(src, out, engine_factory=lambda need: blend_engine(), **options)


def moving_frame(i: int, w: int, h: int, cut_at: int | None = None) -> np.ndarray:
    """RGB frame: a bright square moving right; after `cut_at`, a different scene."""
    img = np.zeros((h, w, 3), np.uint8)
    if cut_at is not None and i >= cut_at:
        # another shot: a fine checkerboard in other colours
        yy, xx = np.mgrid[0:h, 0:w]
        board = ((xx // 4 + yy // 4) % 2).astype(bool)
        img[board] = (200, 40, 30)
        img[~board] = (20, 220, 240)
        return img
    img[:] = (40, 80, 120)
    x = (i * 4) % (w - h // 3)
    img[h // 3 : 2 * h // 3, x : x + h // 3] = (250, 250, 250)
    return img


def make_video(
    path: Path,
    n: int = 20,
    w: int = 128,
    h: int = 72,
    rate: Fraction = Fraction(25),
    audio: bool = False,
    cut_at: int | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    colorspace: int | None = None,
    frames: list[np.ndarray] | None = None,
    audio_codec: str = "aac",
) -> Path:
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            v.codec_context.options = {"crf": "12", "preset": "ultrafast"}
        if time_base is not None:
            v.time_base = time_base
        if colorspace is not None:
            cc = v.codec_context
            cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = (
                colorspace,
                1,
                colorspace,
                colorspace,
            )
        a = None
        if audio:
            a = c.add_stream(audio_codec, rate=48000)
            a.layout = "stereo"
        for i in range(n):
            img = frames[i] if frames is not None else moving_frame(i, w, h, cut_at)
            fmt = "rgb48le" if img.dtype == np.uint16 else "rgb24"
            f = av.VideoFrame.from_ndarray(img, format=fmt)
            if colorspace is not None:
                f = f.reformat(
                    format=pix_fmt, dst_colorspace={1: 1}.get(colorspace, 5), dst_color_range=1
                )
                f.colorspace, f.color_range = colorspace, 1
            if pts is not None:
                f.pts, f.time_base = pts[i], time_base
            else:
                f.pts, f.time_base = i, 1 / rate
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            seconds = n / rate
            total = int(seconds * 48000)
            fmt = a.codec_context.codec.audio_formats[0].name
            done = 0
            while done < total:
                k = min(1024, total - done)
                tone = (np.sin(2 * np.pi * 440 * (np.arange(k) + done) / 48000) * 0.3).astype(
                    np.float32
                )
                fr = av.AudioFrame.from_ndarray(
                    np.stack([tone, tone]), format="fltp", layout="stereo"
                )
                fr.sample_rate, fr.pts = 48000, done
                for out in av.AudioResampler(format=fmt, layout="stereo", rate=48000).resample(fr):
                    out.pts = done
                    c.mux(a.encode(out))
                done += k
            c.mux(a.encode(None))
    return path


def decode(
    path: Path, fmt: str = "rgb24"
) -> tuple[list[np.ndarray], list[Fraction], av.VideoStream]:
    frames, times = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            frames.append(f.to_ndarray(format=fmt))
            times.append(Fraction(f.pts) * Fraction(s.time_base))
        info = {
            "rate": Fraction(s.average_rate),
            "frames": len(frames),
            "pix_fmt": s.codec_context.pix_fmt,
            "colorspace": s.codec_context.colorspace,
            "color_range": s.codec_context.color_range,
            "audio": [
                (a.codec_context.name, float(a.duration * a.time_base) if a.duration else None)
                for a in c.streams.audio
            ],
            "duration": float(c.duration / av.time_base) if c.duration else None,
        }
    return frames, times, info
