"""--dedup: repeated frames (animation on twos and threes) dropped, the distinct ones interpolated
on their real timeline; with the linear-blend stand-in for the network."""

from __future__ import annotations

import json
from fractions import Fraction

import cv2
import numpy as np
import pytest
from clips import decode, interpolate_blended, make_video, moving_frame

from rife_cli.errors import Interrupted
from rife_cli.pipeline import StopRequest, dedup
from rife_cli.pipeline.resume import work_dir_for
from rife_cli.video.source import SourceFrame

W, H = 128, 72
RATE = Fraction(24)


def drawing(k: int) -> np.ndarray:
    """Drawing k: the square 8 px further right than on drawing k - 1 (BGR)."""
    return moving_frame(2 * k, W, H)


def noisy(img: np.ndarray, seed: int, sigma: float = 1.5) -> np.ndarray:
    """A copy as a lossy codec might give it back: small noise everywhere."""
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def stream(pattern: list[int]) -> list[SourceFrame]:
    """Source frames at 24 fps showing drawing pattern[i] at frame i, each copy noisy."""
    return [
        SourceFrame(i, Fraction(i) / RATE, 1 / RATE, noisy(drawing(k), i))
        for i, k in enumerate(pattern)
    ]


def kept(pattern, **kw) -> tuple[list[int], int]:
    d = dedup.Dedup(**kw)
    return [f.index for f in d.filter(stream(pattern))], d.dropped


def test_noise_is_a_repeat_and_a_small_change_is_not():
    a = dedup.luma(stream([0])[0])
    assert dedup.difference(a, dedup.luma(stream([0, 0])[1])) < dedup.DEFAULT_THRESHOLD
    # An 8x6 px detail turning white (a mouth opening): under one level over the whole frame, over
    # 30 in its block.
    img = noisy(drawing(0), 7)
    img[10:16, 20:28] = 255
    changed = dedup.luma(SourceFrame(1, Fraction(1, 24), None, img))
    assert abs(changed.plane.mean() - a.plane.mean()) < 1
    assert dedup.difference(a, changed) > 5 * dedup.DEFAULT_THRESHOLD


def test_twos_and_threes_give_the_drawings_timeline():
    #          0  1  2  3  4  5  6  7  8  9  10
    pattern = [0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 4]
    frames, dropped = kept(pattern)
    # Each drawing at its first frame; the last frame stays so that the output ends in time.
    assert frames == [0, 2, 4, 7, 8, 10]
    assert dropped == 5


def test_a_hold_longer_than_max_hold_stays_a_pause():
    pattern = [0, 0, 1] + [2] * 7 + [3, 3, 4]
    assert kept(pattern, max_hold=4) == ([0, 2, 3, 9, 10, 12], 7)
    assert kept(pattern, max_hold=7) == ([0, 2, 3, 10, 12], 8)  # 7 frames: still a hold


def test_a_hold_ending_in_a_cut_keeps_its_last_copy():
    pattern = [0, 0, 1, 1, 2, 2]
    cut_before = {4}

    def hard(a, b):
        return b.index in cut_before

    assert kept(pattern, hard=hard) == ([0, 2, 3, 4, 5], 1)


def test_threshold_and_default_hold():
    pattern = [0, 0, 1, 1]
    assert kept(pattern, threshold=0)[0] == [0, 1, 2, 3]  # noise is a change at 0
    assert kept(pattern, threshold=1000) == ([0, 3], 2)
    assert dedup.max_hold_for(Fraction(24000, 1001)) == 4
    assert dedup.max_hold_for(Fraction(25)) == 4
    assert dedup.max_hold_for(Fraction(30)) == 5
    assert dedup.max_hold_for(Fraction(60)) == 10


def on_twos(n: int) -> list[np.ndarray]:
    return [cv2.cvtColor(drawing(i // 2), cv2.COLOR_BGR2RGB) for i in range(n)]


def test_on_twos_video_is_interpolated_between_drawings(tmp_path):
    n = 12
    src = make_video(tmp_path / "a.mkv", n=n, rate=RATE, codec="ffv1", frames=on_twos(n))
    s = interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1", dedup=True)
    plain = interpolate_blended(src, tmp_path / "p.mkv", exp=1, codec="ffv1")
    assert s.frames_in == plain.frames_in == n and s.duplicates == 5 and plain.duplicates == 0
    assert s.frames_out == plain.frames_out == 2 * n
    source, _, _ = decode(src)
    out, times, _ = decode(tmp_path / "o.mkv")
    before, _, _ = decode(tmp_path / "p.mkv")
    assert all(abs(t - Fraction(i, 48)) <= Fraction(1, 1000) for i, t in enumerate(times))
    for k in range(n // 2):
        assert np.array_equal(out[4 * k], source[2 * k])  # the drawings pass through untouched
    for j in range(2 * n - 4):  # up to the last drawing (frame n - 2)
        if j % 4 == 0:
            continue
        k, t = j // 4, Fraction(j % 4, 4)  # between drawing k (frame 2k) and k + 1 (frame 2k + 2)
        expect = (1 - float(t)) * source[2 * k] + float(t) * source[2 * k + 2]
        assert np.abs(out[j] - expect).mean() < 1.0, j
    # Without --dedup, the frame between a drawing and its copy is that drawing: the jump stays.
    assert np.abs(before[1].astype(int) - source[0]).mean() < 0.5
    assert np.abs(out[1].astype(int) - source[0]).max() > 50


def test_lossy_on_twos_with_audio_keeps_duration_and_sync(tmp_path):
    n, rate = 24, Fraction(24000, 1001)  # what anime is broadcast and sold at
    src = make_video(tmp_path / "a.mp4", n=n, rate=rate, frames=on_twos(n), audio=True)
    s = interpolate_blended(src, tmp_path / "o.mp4", exp=2, dedup=True)
    assert s.duplicates == n // 2 - 1 and s.frames_out == 4 * n
    _, times, info = decode(tmp_path / "o.mp4")
    assert times == [i / (4 * rate) for i in range(4 * n)]
    assert abs(info["duration"] - n / rate) < 0.03
    assert info["audio"][0][0] == "aac" and abs(info["audio"][0][1] - n / rate) < 0.05


def test_hold_before_a_cut_keeps_the_cut_in_place(tmp_path):
    n = 10
    frames = on_twos(6) + [moving_frame(0, W, H, cut_at=0)] * 4
    src = make_video(tmp_path / "a.mkv", n=n, rate=RATE, codec="ffv1", frames=frames)
    s = interpolate_blended(src, tmp_path / "o.mkv", exp=1, codec="ffv1", dedup=True)
    assert s.scene_cuts == 1 and s.duplicates == 4
    source, _, _ = decode(src)
    out, _, _ = decode(tmp_path / "o.mkv")
    # Source frame 5 (the last copy of drawing 2) is shown until the cut at frame 6, as it was.
    assert np.array_equal(out[11], source[5]) and np.array_equal(out[12], source[6])


def test_image_sequence(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    pattern = [0, 0, 0, 1, 1, 2, 2, 2, 3]
    for i, k in enumerate(pattern):
        cv2.imwrite(str(folder / f"f{i}.png"), drawing(k))
    s = interpolate_blended(folder, tmp_path / "out", exp=1, dedup=True)
    assert s.duplicates == 5
    assert s.frames_out == (len(pattern) - 1) * 2 + 1 == len(list((tmp_path / "out").iterdir()))
    out = [cv2.imread(str(p)) for p in sorted((tmp_path / "out").iterdir())]
    # Between drawing 0 (frame 0) and drawing 1 (frame 3): output 1 sits at t = 1/6.
    expect = drawing(0) * (5 / 6) + drawing(1) * (1 / 6)
    assert np.abs(out[1] - expect).mean() < 0.6


def test_resume_with_dedup_equals_uninterrupted(tmp_path):
    n = 30
    src = make_video(
        tmp_path / "a.mkv", n=n, rate=RATE, codec="ffv1", frames=on_twos(n), audio=True
    )
    kw = {"exp": 1, "codec": "ffv1", "segment_frames": 6, "dedup": True}
    full = interpolate_blended(src, tmp_path / "full.mkv", **kw)
    stop = StopRequest()

    def progress(done):
        if done == 22:
            stop.request(130)

    with pytest.raises(Interrupted):
        interpolate_blended(src, tmp_path / "out.mkv", stop=stop, progress=progress, **kw)
    journal = json.loads((work_dir_for(tmp_path / "out.mkv") / "journal.json").read_text())
    assert journal["segments"] and journal["options"]["dedup"] == "True"
    resumed = interpolate_blended(src, tmp_path / "out.mkv", resume=True, **kw)
    assert resumed.frames_out == full.frames_out == 2 * n
    assert resumed.duplicates == full.duplicates == n // 2 - 1
    a, ta, _ = decode(tmp_path / "full.mkv")
    b, tb, _ = decode(tmp_path / "out.mkv")
    assert ta == tb and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_cli_dedup_uses_v4_and_reports_the_duplicates(tmp_path):
    from click.testing import CliRunner

    from rife_cli.cli import main

    n = 8
    src = make_video(
        tmp_path / "a.mkv",
        n=n,
        w=96,
        h=64,
        rate=RATE,
        frames=[cv2.resize(f, (96, 64)) for f in on_twos(n)],
    )
    out = tmp_path / "o.mkv"
    res = CliRunner().invoke(
        main,
        ["interpolate", str(src), "-o", str(out), "--dedup", "--json", "--precision", "fp32"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["model"] == "v4.0" and "using model v4.0" in res.stderr
    assert summary["duplicates"] == n // 2 - 1 and summary["frames_in"] == n
    assert summary["frames_out"] == 2 * n == len(decode(out)[0])
    assert f"{n // 2 - 1} duplicates dropped" in res.stderr
    named = CliRunner().invoke(
        main, ["interpolate", str(src), "-o", str(tmp_path / "p.mkv"), "--dedup", "--model", "v3.6"]
    )
    assert named.exit_code == 1 and "--dedup" in named.output and "v4.0" in named.output
