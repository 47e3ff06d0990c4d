"""Run under torchrun by test_ddp.py: one step's loss and gradients on this rank's share of a
fixed global batch, summed over ranks; rank 0 writes them to a file."""

from __future__ import annotations

import sys

import torch

from model.train.config import TrainConfig
from model.train.distributed import init_distributed, shutdown, sum_gradients
from model.train.loss import BatchMeta, global_value
from model.train.modeling import build_model
from model.train.step import StepInputs, forward_backward
from tests.train.test_accum import batch_for


def main(out: str, model_config: str, tokenizer: str, accum: int) -> None:
    torch.set_num_threads(1)
    info = init_distributed(torch.device("cpu"))
    tm = build_model(
        TrainConfig(train="-", out="-", model_config=model_config, tokenizer=tokenizer)
    )
    tm.module.train()
    full = batch_for(tm)
    b = len(full.pixels) // info.world
    rows = slice(info.rank * b, (info.rank + 1) * b)
    x = StepInputs(
        full.pixels[rows],
        full.input_ids[rows],
        full.attention_mask[rows],
        BatchMeta(full.meta.image_ids[rows], full.meta.valid[rows]),
    )
    share = forward_backward(tm.module, tm.module.scale, x, info, accum)
    params = [p for p in tm.module.parameters() if p.requires_grad]
    sum_gradients(params, info)
    loss = global_value(share, info)
    if info.rank == 0:
        grads = {n: p.grad for n, p in tm.module.named_parameters() if p.grad is not None}
        torch.save({"loss": loss, "grads": grads, "world": info.world}, out)
    shutdown(info)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
