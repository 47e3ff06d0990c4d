"""A CPU build gives the model the cores its decode workers leave, and gives them back after."""

from __future__ import annotations

import os

import torch

from indexer.pipeline import model_threads, torch_threads


def test_model_threads_leave_the_workers_their_cores(starter_encoder):
    cpus = len(os.sched_getaffinity(0))
    assert model_threads(starter_encoder, 1) == max(1, cpus - 1)
    assert model_threads(starter_encoder, cpus + 3) == 1
    assert model_threads(starter_encoder, 0) is None  # decoding in-process: torch's default


def test_torch_threads_restores_the_previous_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
