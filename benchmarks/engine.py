"""Time skipping dropped branches against computing them, in one run.

Run with ``python benchmarks/engine.py [epochs]`` (default: 3 epochs). For the
default report's ResNet (8 blocks, width 16, stochastic depth with linear
decay to p_L = 0.5) on the digits it prints, with the engine skipping nodes
whose gate weights are all 0 and with it computing every node:

* the time of training for ``epochs`` epochs (one gate draw per batch);
* the time of evaluating all 256 members one at a time on the test split.
"""

from __future__ import annotations

import sys
import time

import torch

import layershare as ls
from layershare.data import digits
from layershare.engine import GateInterpreter


def train_seconds(skip: bool, epochs: int, split) -> float:
    GateInterpreter.skip_dead = skip
    torch.manual_seed(0)
    model = ls.models.ResNet(blocks=8, width=16)
    start = time.perf_counter()
    ls.train.fit(
        model,
        ls.StochasticDepth(p_last=0.5),
        split.train,
        epochs=epochs,
        progress=False,
    )
    return time.perf_counter() - start


def member_seconds(skip: bool, model, members, x) -> float:
    GateInterpreter.skip_dead = skip
    start = time.perf_counter()
    with torch.no_grad():
        for member in members:
            model(x, member=member)
    return time.perf_counter() - start


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    torch.set_num_threads(1)
    split = digits("images")
    print(f"ResNet 8 blocks, stochastic depth, {torch.get_num_threads()} thread")

    skip, full = train_seconds(True, epochs, split), train_seconds(False, epochs, split)
    print(f"  train {epochs} epochs   skip {skip:6.2f} s   compute all {full:6.2f} s")
    print(f"    ratio compute-all / skip: {full / skip:.2f}")

    model = ls.models.ResNet(blocks=8, width=16, scheme=ls.StochasticDepth()).eval()
    members = ls.Sampler(model, model.scheme).enumerate()
    x = split.test.tensors[0]
    skip, full = (
        member_seconds(True, model, members, x),
        member_seconds(False, model, members, x),
    )
    print(f"  256 members one by one   skip {skip:6.2f} s   compute all {full:6.2f} s")
    print(f"    ratio compute-all / skip: {full / skip:.2f}")
    GateInterpreter.skip_dead = True


if __name__ == "__main__":
    main()
