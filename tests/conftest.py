"""Test-wide settings."""

from __future__ import annotations

import torch

# The tests run small tensors, where a second intra-op thread only adds
# contention: on a loaded 2-core machine, batch-norm calls took about 95 ms
# with 2 threads against 20 us with 1.
torch.set_num_threads(1)
