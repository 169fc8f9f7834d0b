"""--hwaccel cuda is reported only where the frames really come from the hardware decoder
(defect 4): FFmpeg's software fallback opens the device too, so `is_hwaccel` cannot tell."""

from __future__ import annotations

import av
import pytest
from clips import interpolate_blended, make_video

from rife_cli import doctor
from rife_cli.video import source


class _Context:
    """A decoder context as PyAV shows one whose hardware device opened: is_hwaccel is true; the
    pixel format is the one FFmpeg chose once decoding began (`pix_fmt`, None: the real one)."""

    def __init__(self, real, pix_fmt: str | None):
        self._real = real
        self._pix_fmt = pix_fmt
        self.is_hwaccel = True

    @property
    def pix_fmt(self):
        return self._pix_fmt or self._real.pix_fmt

    def __getattr__(self, name):
        return getattr(self._real, name)


class _Stream:
    def __init__(self, real, pix_fmt):
        self._real = real
        self.codec_context = _Context(real.codec_context, pix_fmt)

    def __getattr__(self, name):
        return getattr(self._real, name)


class _Container:
    """A software-decoding container dressed as one opened with a hardware device."""

    def __init__(self, path, pix_fmt=None):
        self._real = av.open(str(path))
        video = [_Stream(s, pix_fmt) for s in self._real.streams.video]
        self.streams = type("Streams", (), {"video": video})()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._real.close()

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def call(*args, **kw):  # decode(s), demux(s), seek(stream=s): PyAV wants its own stream
            args = [a._real if isinstance(a, _Stream) else a for a in args]
            kw = {k: v._real if isinstance(v, _Stream) else v for k, v in kw.items()}
            return attr(*args, **kw)

        return call


@pytest.fixture
def clip(tmp_path):
    return make_video(tmp_path / "a.mp4", n=6)


def test_a_software_fallback_is_not_reported_as_hardware(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(source, "_open_video", lambda path, hw, **kw: _Container(path))
    assert source.check_hwaccel(source.probe(clip), "cuda") is False
    warnings = []
    s = interpolate_blended(
        clip, tmp_path / "out.mkv", exp=1, codec="ffv1", hwaccel="cuda", warn=warnings.append
    )
    assert s.hwaccel is None and s.frames_out == 12
    assert any("decoding on the CPU" in w for w in warnings)


def test_frames_of_the_device_format_are_reported_as_hardware(clip, monkeypatch):
    monkeypatch.setattr(source, "_open_video", lambda path, hw, **kw: _Container(path, "cuda"))
    assert source.check_hwaccel(source.probe(clip), "cuda") is True


def test_doctor_nvdec_probe_needs_device_frames(tmp_path, monkeypatch):
    made = []

    def fake_open(path, mode="r", hwaccel=None, **kw):
        if hwaccel is None:
            return real_open(path, mode, **kw)
        made.append(path)
        return _Container(path)

    real_open = av.open
    monkeypatch.setattr(av, "open", fake_open)
    assert doctor.nvdec_works("h264", tmp_path) is False
    assert made  # the probe clip was made and decoded through the fallback
