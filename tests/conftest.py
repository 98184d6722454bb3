"""Shared test settings: one intra-op thread per xdist worker keeps 2 workers on 2 cores."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
