"""Data parallel on CPU with 2 gloo processes: gathered NT-Xent and global-batch attention under DDP give
the loss and the gradients of one process on the concatenated batch."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from deepfusion.model.network.collectives import gather_rows, gathered_nt_xent
from deepfusion.model.network.forward_options import forward_options
from deepfusion.model.network.losses import nt_xent
from deepfusion.model.network.transformer_head import TransformerHead
from deepfusion.model.runs.distributed import teardown

WORLD, N, IN = 2, 6, 10  # N instances per rank and view


def build(head: str, scope: str) -> nn.Module:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(IN, 12), nn.Tanh())
    if head == "transformer":
        h = TransformerHead(12, dim=16, depth=2, heads=4, ffn_dim=24, out_dim=8, scope=scope, out_bn=False)
    else:
        h = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))
    return nn.Sequential(backbone, h).double()


CASES = [
    ("transformer", "both_views"),
    ("transformer", "per_view"),
    ("transformer", "mask_pair"),
    ("mlp", "both_views"),
]


def _worker(rank, store, temperature):
    # one spawn for every case: starting processes costs far more than the cases themselves
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    clean = False
    try:
        _check_gather_order(rank)
        for head, scope in CASES:
            _compare(rank, head, scope, temperature)
        clean = True
    finally:
        teardown(clean)  # the product's teardown: without it the gloo group can abort at exit


def _compare(rank, head, scope, temperature):
    torch.manual_seed(1)
    x = torch.randn(2, WORLD * N, IN, dtype=torch.float64)  # (views, global instances, in)
    ids = torch.arange(WORLD * N).repeat(2)
    # one process on the concatenated batch (view-major), computed on every rank
    ref = build(head, scope)
    ref_loss = nt_xent(ref(x.reshape(-1, IN)), ids, temperature)
    ref_loss.backward()
    ref_grads = [p.grad.clone() for p in ref.parameters()]
    # this rank's slice under DDP, attention and loss over the global batch
    model = build(head, scope)
    ddp = nn.parallel.DistributedDataParallel(model)
    sl = slice(rank * N, (rank + 1) * N)
    local_ids = torch.arange(WORLD * N)[sl].repeat(2)
    with forward_options(attend="global"):
        loss = gathered_nt_xent(ddp(x[:, sl].reshape(-1, IN)), local_ids, temperature)
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    torch.testing.assert_close(total / WORLD, ref_loss.detach(), rtol=1e-5, atol=1e-6)  # nt_xent computes in float32
    for (name, p), g in zip(model.named_parameters(), ref_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6, msg=lambda m: f"{head}/{scope} {name}: {m}")


def _check_gather_order(rank):
    x = torch.arange(2 * 3, dtype=torch.float64).reshape(6, 1) + 100 * rank  # (V*n, 1), V=2, n=3
    g, rows = gather_rows(x, views=2)
    # global view-major order: view 0 of rank 0, view 0 of rank 1, view 1 of rank 0, view 1 of rank 1
    assert g[:, 0].tolist() == [0, 1, 2, 100, 101, 102, 3, 4, 5, 103, 104, 105]
    assert torch.equal(g[rows], x)


@pytest.mark.slow  # starts two gloo processes and trains (about 5 s)
def test_two_processes_match_one_process_on_the_concatenated_batch(tmp_path):
    """Loss and every gradient for each head scope (and an attention-free head); the gather order."""
    mp.spawn(_worker, args=(str(tmp_path / "store"), 0.3), nprocs=WORLD, join=True)


def test_without_a_process_group_everything_is_local():
    torch.manual_seed(0)
    z, ids = torch.randn(8, 5), torch.arange(4).repeat(2)
    torch.testing.assert_close(gathered_nt_xent(z, ids, 0.5), nt_xent(z, ids, 0.5))
    model = build("transformer", "mask_pair")
    x = torch.randn(8, IN, dtype=torch.float64)
    out = model(x)
    with forward_options(attend="global"):
        torch.testing.assert_close(model(x), out)


def test_nt_xent_rows_average_to_the_full_loss():
    torch.manual_seed(0)
    z, ids = torch.randn(10, 4, dtype=torch.float64), torch.arange(5).repeat(2)
    parts = [nt_xent(z, ids, 0.2, rows=torch.tensor(r)) for r in ([0, 1, 5, 6], [2, 3, 4, 7, 8, 9])]
    torch.testing.assert_close((4 * parts[0] + 6 * parts[1]) / 10, nt_xent(z, ids, 0.2))
