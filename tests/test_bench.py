"""`rife bench` runs both sides for real and reports ratios; the allocator setting it relies on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from rife_cli.cli import main
from rife_cli.engine import pick_precision


def test_bench_reports_ours_and_a_baseline_from_its_own_process():
    res = CliRunner().invoke(
        main, ["bench", "--size", "96x64", "--frames", "3", "--rounds", "1", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    (r,) = out["results"]
    # --precision auto: fp32 on most CPUs, bf16 on those with AMX or AVX-512 bf16.
    auto = pick_precision("auto", torch.device("cpu"))
    assert r["size"] == "96x64" and r["model"] == "v3.6" and r["precision"] == auto
    for key in ("pairs_per_s", "baseline_pairs_per_s", "e2e_fps", "baseline_e2e_fps"):
        assert r[key] > 0, key
    assert abs(r["model_ratio"] - r["pairs_per_s"] / r["baseline_pairs_per_s"]) < 1e-2
    # Like with like: both sides hold the last frame, 2N frames from N (3 -> 6).
    assert r["e2e_frames"] == r["baseline_e2e_frames"] == 6
    assert "threads" in out["machine"]


def test_bench_rejects_a_bad_size_in_one_line():
    res = CliRunner().invoke(main, ["bench", "--size", "big"])
    assert res.exit_code == 2
    assert "--size 'big'" in res.output and "Traceback" not in res.output


RETAINED = """
import os, sys, threading, torch
from rife_cli.engine import hostmem
ok = hostmem.keep_freed_memory() if sys.argv[1] == "keep" else None
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def block():
    x = torch.ones(1 << 24)  # 64 MiB, every page touched
    del x
before = rss()
if sys.argv[2] == "thread":  # as in a CPU lane: a thread of its own allocates and frees
    t = threading.Thread(target=block)
    t.start()
    t.join()
else:
    block()
print(ok, (rss() - before) >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
@pytest.mark.parametrize("where", ["main", "thread"])
def test_keep_freed_memory_keeps_a_freed_block_for_reuse(where):
    def child(mode):
        out = subprocess.run(
            [sys.executable, "-c", RETAINED, mode, where],
            capture_output=True,
            text=True,
            check=True,
        )
        ok, kept_mib = out.stdout.split()
        return ok, int(kept_mib)

    ok, kept = child("keep")
    assert ok == "True" and kept >= 60  # still mapped: the next pass reuses it, no page faults
    _, default = child("default")
    assert default < 8  # the default allocator unmapped it


def test_baseline_makes_the_mirrored_calls_one_after_the_other():
    """The baseline calls each v3.x block once per direction, as the reference does (in NCHW two
    single calls are faster than one of two), and that changes nothing in the result."""
    from conftest import golden_pair

    from rife_cli.bench import baseline_engine

    base = baseline_engine("v3.6")
    calls = []
    base.net.block0.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape[0]))
    a, b = golden_pair("I0")
    (one_by_one,) = base.interpolate(a, b, [0.5])
    assert calls == [1, 1]
    from rife_cli.models.transforms import mirrored

    mirrored.apply(base.net, "batch")  # one batch of two
    (batched,) = base.interpolate(a, b, [0.5])
    assert calls == [1, 1, 2]
    assert abs(one_by_one.astype(int) - batched.astype(int)).max() <= 1


PREFAULTED = """
import resource, sys
import torch
from rife_cli.engine import hostmem
thread = hostmem.prefault(1 << 26) if sys.argv[1] == "prefault" else None
if thread is not None:
    thread.join()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(1 << 24)  # 64 MiB, every page touched
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_prefaulted_memory_spares_the_next_allocation_its_page_faults():
    def faults(mode):
        out = subprocess.run(
            [sys.executable, "-c", PREFAULTED, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout)

    assert faults("cold") > 10_000  # 64 MiB in 4 KiB pages: ~16,000 faults
    assert faults("prefault") < 1_000


def test_first_pass_estimate_is_capped_by_available_memory():
    from rife_cli.engine import hostmem

    assert hostmem.first_pass_bytes(1280, 720, 2) == 1280 * 720 * 2 * 940
    assert hostmem.first_pass_bytes(10**5, 10**5, 8) < 10**5 * 10**5 * 8 * 940  # capped
