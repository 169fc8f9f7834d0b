"""NVDEC's pictures handed to the engine on the GPU, without the round trip through host memory.

With `--hwaccel cuda` and the engine on CUDA, the decoder is opened with PyAV's `is_hw_owned`:
its pictures stay in GPU memory, and their planes are read through DLPack into one tensor of
samples laid out as rife_cli.engine.colour.Yuv420 holds them (luma rows, then the chroma
samples), which the engine converts to BGR where it is (no upload).

Each picture still comes down to host memory once, as it did before: the pass-through frames are
encoded from it (H100/H200 have no NVENC, and the encoders take host frames), and the scene
thumbnail is made from it. What is saved is the upload of every source picture and the host's
two copies on the way (gathering the planes, then page-locking them).

Ordering: FFmpeg's NVDEC copies each picture out of the decoder on the CUDA null stream (the
device context's stream, which PyAV leaves unset) of the primary context, which is PyTorch's
too. The planes are copied into our own tensor on PyTorch's default stream of that device, which
is that null stream, so after the decoder's copy and before the decoder can reuse the picture's
memory; every batch's stream waits for the default stream before it starts
(rife_cli.engine.cuda.CudaBackend.stream), and the batch marks the tensor as used on its stream.

Never silently wrong: the first picture's device samples are compared with its host download,
and any difference or failure (a layout PyAV cannot export, a driver refusing) makes the rest
of the input go through host memory, said once. Not yet run on a GPU (none was lent while this
was written); its logic runs on the CPU in tests/test_nvdec.py, where PyAV exports host planes
through the same DLPack code.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import av
import numpy as np

if TYPE_CHECKING:
    import torch

# The formats NVDEC gives that PyAV exports through DLPack (8- and 10-bit 4:2:0). Others (4:4:4,
# 12 bits as p016le) are downloaded and go the host's way.
KEPT_FORMATS = ("nv12", "p010le")


def on_gpu(frame: av.VideoFrame) -> bool:
    """A picture the decoder left in GPU memory (is_hw_owned)."""
    return frame.format.name == "cuda"


def picture_format(frame: av.VideoFrame) -> str:
    """The pixel format of the picture's samples, wherever they are."""
    sw = frame.sw_format if on_gpu(frame) else None
    return sw.name if sw is not None else frame.format.name


def download(frame: av.VideoFrame) -> av.VideoFrame:
    """The picture in host memory, in its own pixel format (PyAV transfers a GPU picture; a host
    one is returned as it is)."""
    if not on_gpu(frame):
        return frame
    return frame.reformat(format=picture_format(frame))


def device_samples(frame: av.VideoFrame, device: torch.device) -> torch.Tensor:
    """The picture's planes as one (rows, width) tensor of samples on `device`, laid out as
    Yuv420.data (each plane's rows without the decoder's padding, luma first), 16-bit samples as
    int16 (the bits unchanged: uint16 has few CUDA kernels). Read through DLPack: from GPU
    memory for a picture NVDEC left there, from host memory otherwise."""
    import torch

    views = [torch.from_dlpack(plane.__dlpack__()) for plane in frame.planes]
    if views[0].device != device:
        raise ValueError(f"the picture is on {views[0].device}, the engine on {device}")
    stream = (
        torch.cuda.stream(torch.cuda.default_stream(device))
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    with stream:  # the null stream, where NVDEC wrote the picture (see the module's doc)
        flat = [v.view(torch.int16) if v.element_size() == 2 else v for v in views]
        return torch.cat([v.reshape(-1) for v in flat]).view(-1, frame.width)


class DevicePictures:
    """One input's pictures for the engine on `device`: each as (device samples or None, the
    picture in host memory). None once the device's way has failed or disagreed with the host's
    (said once through `warn`); the caller then takes the host's way."""

    def __init__(self, device: torch.device, name: str, warn=None):
        self.device = device
        self.name = name  # the input, for messages
        self.warn = warn
        self.failed: str | None = None  # why the device's way was given up
        self.checked = False  # the first picture's samples matched the host's

    def keeps(self, frame: av.VideoFrame, size: tuple[int, int]) -> bool:
        """Whether this picture goes to the engine from the GPU: decoded there, of a format PyAV
        exports, already at the stream's `size` (nothing on the host has to fit it)."""
        return (
            self.failed is None
            and on_gpu(frame)
            and picture_format(frame) in KEPT_FORMATS
            and (frame.width, frame.height) == size
        )

    def take(self, frame: av.VideoFrame, host_samples) -> tuple[torch.Tensor | None, av.VideoFrame]:
        """The picture's device samples (None where the device's way is off) and its host copy.
        `host_samples(host_frame)` gives the samples the host's way (source.frame_samples), to
        check the first picture against."""
        host = download(frame)
        if self.failed is not None:
            return None, host
        try:
            samples = device_samples(frame, self.device)
        except (NotImplementedError, TypeError, ValueError, RuntimeError, BufferError) as exc:
            self._give_up(f"{type(exc).__name__}: {exc}")
            return None, host
        if not self.checked:
            if not _same(samples, host_samples(host)):
                self._give_up("its samples differ from the host's download of it")
                return None, host
            self.checked = True
        return samples, host

    def _give_up(self, why: str) -> None:
        self.failed = why
        if self.warn:
            self.warn(
                f"{self.name}: NVDEC's pictures cannot be handed to the engine on the GPU "
                f"({why}); they go through host memory"
            )


def _same(samples: torch.Tensor, expected: np.ndarray) -> bool:
    """Device samples (16-bit ones as int16) equal to the host's, bit for bit."""
    got = samples.cpu().numpy()
    return got.shape == expected.shape and np.array_equal(got.view(expected.dtype), expected)
