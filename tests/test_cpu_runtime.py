"""CPU run-time settings: malloc tuning serves large blocks from the heap (kept mapped between training steps instead
of mmapped and unmapped each time), changes no result, and gives way to the user's own settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Hold a fresh 64 MiB tensor and report how many bytes glibc has in mmapped blocks meanwhile (mallinfo2's hblkhd),
# against before: untuned, glibc mmaps any block above its threshold (at most 32 MiB); tuned, none. Then a result
# computed with memory freed and allocated again round after round.
_ALLOC = """
import ctypes, json, sys
from solov2.utils.cpu_runtime import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tune" else False
import torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
if not hasattr(libc, "mallinfo2"):
    print(json.dumps({"skip": "glibc older than 2.33 has no mallinfo2"}))
    sys.exit(0)
libc.mallinfo2.restype = MallInfo2
torch.set_num_threads(1)
before = libc.mallinfo2().hblkhd
x = torch.ones(16 * 1024 * 1024)  # 64 MiB
mmapped = libc.mallinfo2().hblkhd - before
g = torch.Generator().manual_seed(0)
x = torch.randn(1024, 1024, generator=g)
acc = torch.zeros(())
for _ in range(10):
    y = x * 2.0 + 1.0
    acc += y[::97, ::89].sum()
    del y
print(json.dumps({"applied": applied, "mmapped": mmapped, "result": acc.item()}))
"""


def _run(code, *args, env_extra=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


_MALLOC_VARS = ("SOLOV2_MALLOC_TUNING", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
                "MALLOC_TOP_PAD_")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_tune_malloc_keeps_large_blocks_on_the_heap_and_changes_no_result():
    plain = json.loads(_run(_ALLOC, "plain", drop=_MALLOC_VARS))
    if "skip" in plain:
        pytest.skip(plain["skip"])
    tuned = json.loads(_run(_ALLOC, "tune", drop=_MALLOC_VARS))
    assert tuned["applied"] is True
    assert plain["mmapped"] >= 64 * 1024 * 1024, plain  # glibc's default: a fresh mmap per large block
    assert tuned["mmapped"] == 0, tuned  # tuned: from the heap, whose pages stay mapped from step to step
    assert tuned["result"] == plain["result"]


@pytest.mark.slow
def test_tune_malloc_respects_opt_outs():
    code = "from solov2.utils.cpu_runtime import tune_malloc; print(tune_malloc(), tune_malloc())"
    assert _run(code, env_extra={"SOLOV2_MALLOC_TUNING": "0"}, drop=_MALLOC_VARS) == "False False"
    assert _run(code, env_extra={"MALLOC_MMAP_THRESHOLD_": "65536"}, drop=_MALLOC_VARS) == "False False"

