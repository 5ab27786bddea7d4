"""launch(): several gloo processes on CPU, local process groups, DDP gradient sync, error propagation."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from solov2.engine import SimpleTrainer, launch
from solov2.utils import comm

pytestmark = pytest.mark.slow  # subprocess launches / trainings


def _worker(out_dir: str) -> None:
    """Checks the process group and trains a tiny DDP model with rank-specific data."""
    torch.manual_seed(0)  # same initial weights on every rank (DDP broadcasts them anyway)
    rank = comm.get_rank()
    gathered = comm.all_gather(rank * 10)
    to_zero = comm.gather(rank, dst=0)
    model = nn.parallel.DistributedDataParallel(nn.Linear(3, 1), broadcast_buffers=False)

    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, batch):
            return {"loss": (self.inner(torch.stack(batch)) - rank).pow(2).mean()}

    g = torch.Generator().manual_seed(100 + rank)  # different data per rank
    loader = [[torch.randn(3, generator=g) for _ in range(2)] for _ in range(3)]
    wrapped = Wrapped(model)
    trainer = SimpleTrainer(wrapped, loader, torch.optim.SGD(wrapped.parameters(), lr=0.1))
    trainer.train(0, 3)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    all_weights = comm.all_gather(weights)
    info = {
        "rank": rank,
        "world": comm.get_world_size(),
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "gathered": gathered,
        "to_zero": to_zero,
        "is_ddp": isinstance(model, nn.parallel.DistributedDataParallel),
        "weights_equal": all(torch.allclose(all_weights[0], w) for w in all_weights),
        "total_loss": trainer.storage.history("total_loss").latest(),
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(info))


def _failing_worker(out_dir: str) -> None:
    if comm.get_rank() == 1:
        raise ValueError("boom from rank 1")
    comm.synchronize()  # rank 0 waits for a peer that never comes; launch must still end


def test_two_cpu_processes_with_gloo(tmp_path):
    launch(_worker, 2, num_machines=1, machine_rank=0, dist_url="auto", args=(str(tmp_path),))
    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, info in enumerate(infos):
        assert info["rank"] == r and info["world"] == 2
        assert info["local_rank"] == r and info["local_size"] == 2
        assert info["gathered"] == [0, 10]
        assert info["is_ddp"] and info["weights_equal"]
    assert infos[0]["to_zero"] == [0, 1] and infos[1]["to_zero"] == []
    # Losses are averaged over ranks, so both ranks log the same value.
    assert infos[0]["total_loss"] == pytest.approx(infos[1]["total_loss"])


def test_child_error_propagates(tmp_path, monkeypatch):
    # torch pickles a failed child's exception into a temporary file that it reads but never deletes.
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))
    # Which failure torch reports first is a race: rank 1's own error, or rank 0's barrier losing its peer.
    with pytest.raises(Exception, match="boom from rank 1|(closed|reset) by peer"):
        launch(_failing_worker, 2, dist_url="auto", args=(str(tmp_path),))
    assert not list(temp_dir.glob("pytorch-errorfile-*")), "the children's error files were left behind"


def test_launch_argument_errors_and_single_process(tmp_path):
    with pytest.raises(ValueError, match="--dist-url auto only works on one machine"):
        launch(_worker, 1, num_machines=2, machine_rank=0, dist_url="auto")
    with pytest.raises(ValueError, match="--machine-rank 2"):
        launch(_worker, 1, num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1")
    calls = []
    launch(lambda a, b: calls.append((a, b)), 1, args=(1, 2))  # world size 1: runs in this process
    assert calls == [(1, 2)]


def _user_error_worker(out_dir: str) -> None:
    from solov2.utils.errors import DatasetFormatError

    if comm.get_rank() == 1:
        raise DatasetFormatError("annotation 7 of 'x.json' is broken")
    comm.synchronize()  # rank 0 then loses its peer; the cause reported must still be rank 1's


def test_child_user_error_is_raised_once_in_the_parent(tmp_path, capfd):
    from solov2.utils.errors import UserError

    with pytest.raises(UserError) as e:
        launch(_user_error_worker, 2, dist_url="auto", args=(str(tmp_path),))
    assert type(e.value) is UserError and str(e.value) == "annotation 7 of 'x.json' is broken"
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Terminating process" not in err  # the child printed nothing


def _config_error(_local_rank: int) -> None:
    from solov2.utils.errors import ConfigError

    raise ConfigError(f"bad value in process {comm.get_rank()}")


def _foreign_launcher() -> None:
    """What another launcher (e.g. Detectron2's) does: spawn processes running the wrapped function."""
    import torch.multiprocessing as mp

    from solov2.utils.error_reporting import ReportUserErrors

    mp.start_processes(ReportUserErrors(_config_error), nprocs=2, start_method="spawn")


def test_user_errors_of_another_launchers_processes_reach_run_tool(capfd):
    from solov2.utils.error_reporting import run_tool

    assert run_tool(_foreign_launcher) == 1
    err = capfd.readouterr().err.splitlines()
    # Both processes failed alike (no process group: both are rank 0): one line, no launcher traceback.
    assert err == ["ERROR: bad value in process 0"], err
