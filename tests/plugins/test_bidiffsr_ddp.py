"""The binarized UNet trains under DistributedDataParallel with find_unused_parameters=False (2 CPU ranks, gloo)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_train_with_mixed_timesteps(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ranks = [
        subprocess.Popen([sys.executable, str(WORKER), str(rank), "2", str(port), str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outputs
    results = [json.loads(tmp_path.joinpath(f"rank{r}.json").read_text()) for r in range(2)]
    assert all(math.isfinite(v) for r in results for v in r["losses"])
    assert results[0]["losses"] != results[1]["losses"]  # each rank saw its own data...
    assert math.isclose(results[0]["checksum"], results[1]["checksum"], rel_tol=0, abs_tol=1e-9)  # ...same weights
