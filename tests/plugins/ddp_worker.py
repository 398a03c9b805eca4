"""One rank of the DistributedDataParallel test (run as a script by test_bidiffsr_ddp.py).

Usage: ``python ddp_worker.py RANK WORLD_SIZE PORT OUT_DIR``. Each rank binarizes the same tiny UNet with the
``bidiffsr`` recipe, wraps it in DDP with ``find_unused_parameters=False`` (gloo, CPU), trains a few steps on batches
that mix timesteps (so different samples use different TaR / TaA groups) and writes its losses and a checksum of
its parameters to ``OUT_DIR/rank{RANK}.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from binarize import binarize
from binarize.zoo import ZOO


def main(rank: int, world: int, port: int, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same model on every rank
    entry = ZOO.get("bidiffsr-unet-tiny")
    model = binarize(entry.build(), "bidiffsr", example_inputs=entry.inputs(16))
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(100 + rank)  # different data on every rank
    losses = []
    for _ in range(3):
        x0 = torch.rand(2, 3, 16, 16, generator=generator)
        cond = torch.rand(2, 3, 16, 16, generator=generator)
        t = torch.randint(0, 2000, (2,), generator=generator)
        noise = torch.randn(2, 3, 16, 16, generator=generator)
        loss = (ddp(x0 + noise, t, cond) - noise).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
    out.joinpath(f"rank{rank}.json").write_text(json.dumps({"losses": losses, "checksum": checksum}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
