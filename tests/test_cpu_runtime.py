"""CPU run-time settings: malloc tuning keeps large blocks mapped (no page faults per step) and changes no result;
the OpenMP wait policy is only set before torch is imported and never over the user's choice."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Allocate, touch and free 64 MiB tensors round after round (as training steps do with their activations), then
# report the minor page faults of the last 15 rounds and a result computed with that memory.
_CHURN = """
import json, resource, sys
from solov2.utils.cpu_runtime import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tune" else False
import torch
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
x = torch.randn(4096, 4096, generator=g)  # 64 MiB
acc = torch.zeros(())
for i in range(20):
    if i == 5:  # the first rounds may grow the heap
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x * 2.0 + 1.0  # two fresh 64 MiB blocks, written in full, then freed
    acc += y[::97, ::89].sum()
    del y
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults, "result": acc.item()}))
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_tune_malloc_stops_page_faults_and_changes_no_result():
    plain = json.loads(_run(_CHURN, "plain", drop=_MALLOC_VARS))
    tuned = json.loads(_run(_CHURN, "tune", drop=_MALLOC_VARS))
    assert tuned["applied"] is True
    # Untuned, every round maps its blocks afresh: ~32k faults of 4 KiB pages (fewer with huge pages); tuned, the
    # heap's pages stay mapped from round to round.
    assert plain["faults"] > 10 * tuned["faults"] + 5000, (plain, tuned)
    assert tuned["result"] == plain["result"]


def test_tune_malloc_respects_opt_outs():
    code = "from solov2.utils.cpu_runtime import tune_malloc; print(tune_malloc(), tune_malloc())"
    assert _run(code, env_extra={"SOLOV2_MALLOC_TUNING": "0"}, drop=_MALLOC_VARS) == "False False"
    assert _run(code, env_extra={"MALLOC_MMAP_THRESHOLD_": "65536"}, drop=_MALLOC_VARS) == "False False"

