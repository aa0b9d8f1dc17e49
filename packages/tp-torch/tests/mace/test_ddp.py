"""The converted MACE model under torch DDP (two CPU processes, gloo): each rank's gradients
are the one-process gradients of the mean loss over both ranks' structures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 torch.load-s constants
pytest.importorskip("mace.modules")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from mace_models import build_mace, cu_al_batch  # noqa: E402
from tp_torch.integrations import mace as tm  # noqa: E402

DTYPE = torch.float64


def _loss(model, batch):
    out = model(dict(batch), compute_force=True, training=True)
    return out["energy"].square().sum() + out["forces"].square().sum()


def _rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        model = tm.convert(build_mace(DTYPE, seed=5))
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        _loss(ddp, cu_al_batch(DTYPE, seed=rank)).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        torch.save(grads, os.path.join(out_dir, f"grads{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_same_gradients_as_one(tmp_path):
    world = 2
    mp.spawn(_rank, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world,
             join=True)
    model = tm.convert(build_mace(DTYPE, seed=5))
    loss = sum(_loss(model, cu_al_batch(DTYPE, seed=r)) for r in range(world)) / world
    loss.backward()
    want = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert want
    for rank in range(world):
        got = torch.load(tmp_path / f"grads{rank}.pt")
        assert set(got) == set(want)
        for name, g in want.items():
            torch.testing.assert_close(got[name], g, rtol=1e-9, atol=1e-12, msg=name)
