"""`clipsearch train`, `clipsearch eval` and `clipsearch data shapes`: contrastive training,
retrieval evaluation and the synthetic shapes dataset. Training code is imported only here."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ._output import emit_json, fail, info, out
from .model_cmds import MODEL_HELP, resolve_model_arg


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)
    _register_eval(sub)
    _register_data(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        help="train or fine-tune a dual encoder contrastively on image–caption pairs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  clipsearch data shapes --out data/shapes --n 2000\n"
        "  clipsearch train --train data/shapes/train.csv --val data/shapes/heldout.csv \\\n"
        "      --out runs/tiny --model-config tiny --epochs 4\n"
        "  clipsearch train --train data/shapes/train.csv --val data/shapes/heldout.csv \\\n"
        "      --out runs/shapes --init starter --image-head linear --lock-image --steps 300\n"
        "  clipsearch train --train captions.csv --out runs/lit --init ViT-B/32 --lock-image \\\n"
        "      --lr 1e-5 --epochs 2\n"
        "  clipsearch train --train captions.csv --out runs/ft \\\n"
        "      --init hf:openai/clip-vit-base-patch32 --lr 1e-5 --batch-size 256 --accum-steps 4\n"
        "  clipsearch train --config run.yaml --out runs/ft --resume\n"
        "  torchrun --nproc_per_node 2 -m app.cli train --config run.yaml --out runs/ddp\n"
        "values given on the command line override those in --config; an --out that already\n"
        "holds a model is refused unless --resume or --overwrite is given",
    )
    t.add_argument("--config", help="a JSON or YAML file of training options (keys as below)")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="STATE",
        help="continue from the latest step checkpoint in --out (or the given state file)",
    )
    t.add_argument("--json", action="store_true", help="print the run summary as JSON")
    _add_config_flags(t)
    t.set_defaults(func=cmd_train)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "eval",
        help="Recall@1/5/10 (both directions) and zero-shot accuracy on image–caption data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  clipsearch eval --model runs/shapes --data data/shapes/heldout.csv\n"
        "  clipsearch eval --model hf:openai/clip-vit-base-patch32 --data val.jsonl --json\n"
        "  clipsearch eval --model ViT-B/32 --data flickr30k/dataset_flickr30k.json --split test\n"
        "  clipsearch eval --model ViT-B/32 --data coco/annotations/captions_val2017.json",
    )
    e.add_argument("--model", default="default", metavar="SPEC", help=MODEL_HELP)
    e.add_argument(
        "--data",
        required=True,
        help="manifest, folder, .tar shards, or a caption dataset as it comes: COCO "
        "captions_*.json, Flickr30k results.csv, Flickr8k captions.txt, Karpathy dataset_*.json",
    )
    e.add_argument(
        "--split", default=None, help="Karpathy split files: train, val, test (default: test)"
    )
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if present)")
    e.add_argument("--json", action="store_true", help='print {"t2i": {...}, "i2t": {...}, ...}')
    e.set_defaults(func=cmd_eval)


def _register_data(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser(
        "data",
        help="generate datasets",
        formatter_class=fmt,
        epilog="examples:\n  clipsearch data shapes --out data/shapes --n 2000 --seed 0",
    )
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    s = dsub.add_parser(
        "shapes",
        help="synthetic scenes of coloured shapes with compositional captions",
        formatter_class=fmt,
        epilog="writes DIR/train.csv (2 captions per image), DIR/heldout.csv (unseen shape–colour "
        "pairs, unique captions, a label column) and DIR/images/",
    )
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--n", type=int, default=2000, help="number of training images")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--heldout", type=int, default=None, help="held-out images (max 120)")
    s.add_argument("--size", type=int, default=64, help="image side in pixels")
    s.set_defaults(func=cmd_data_shapes)


def config_flags() -> list[tuple[str, type, Any, str]]:
    """(name, type, default, help) of every TrainConfig field that has a --flag: the dataclass
    is the one list (model/train/config.py imports no torch, so --help stays instant)."""
    from model.train.config import TrainConfig, field_types

    types_ = field_types()
    return [
        (f.name, types_[f.name], f.default, f.metadata["help"])
        for f in dataclasses.fields(TrainConfig)
        if "help" in f.metadata
    ]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field; None means 'not given', so --config values stay."""
    g = p.add_argument_group("training options (also the keys of a --config file)")
    for name, kind, default, help_ in config_flags():
        flag = "--" + name.replace("_", "-")
        if default not in (None, "") and "default:" not in help_:
            shown = ("on" if default else "off") if kind is bool else default
            help_ = f"{help_} (default: {shown})"
        if kind is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            g.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper(), help=help_)


def cmd_train(args: argparse.Namespace) -> int:
    from model.train.config import make_config
    from model.train.loop import train

    overrides = {name: getattr(args, name) for name, *_ in config_flags()}
    cfg = make_config(args.config, **overrides)
    result = train(cfg, resume=args.resume)
    summary = {
        "model": result.model_spec,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "val": result.metrics,
        "skipped": result.skipped,
    }
    if not result.model_spec:  # a non-zero torchrun rank: rank 0 reports
        return 0
    if args.json:
        emit_json(summary)
    else:
        info(f"trained {result.steps} steps, final loss {result.final_loss:.4f}")
        if result.skipped:
            info(f"skipped rows: {result.skipped}")
        if result.metrics:
            _print_eval(result.metrics)
        info(f"load the model with --model {result.model_spec}")
        out(result.model_spec)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from model import load_encoder
    from model.train.data import load_pairs
    from model.train.datasets import split_for
    from model.train.evaluate import evaluate

    data = load_pairs(args.data, split_for(args.data, args.split, "test"))  # fails fast
    try:
        enc = load_encoder(resolve_model_arg(args.model), device=args.device)
    except ValueError as e:
        fail(str(e))
    res = evaluate(enc, data, batch_size=args.batch_size)
    res["model"] = enc.spec
    if args.json:
        emit_json(res)
    else:
        _print_eval(res, to_stdout=True)
    return 0


def _print_eval(res: dict, to_stdout: bool = False) -> None:
    say = out if to_stdout else info
    say(f"{'':6}{'R@1':>8}{'R@5':>8}{'R@10':>8}")
    for d, name in (("t2i", "text→image"), ("i2t", "image→text")):
        r = res[d]
        say(f"{d:6}{r['R@1']:8.3f}{r['R@5']:8.3f}{r['R@10']:8.3f}   {name}")
    if "zeroshot" in res:
        z = res["zeroshot"]
        say(f"zero-shot top-1 {z['top1']:.3f} over {z['classes']} classes")
    say(
        f"{res['n_images']} images, {res['n_texts']} captions (chance R@1 ≈ "
        f"{res['chance_t2i_R@1']:.3f})"
    )


def cmd_data_shapes(args: argparse.Namespace) -> int:
    from model.samples.shapes import generate

    try:
        counts = generate(
            args.out, n=args.n, seed=args.seed, n_heldout=args.heldout, side=args.size
        )
    except ValueError as e:
        fail(str(e))
    info(f"wrote {counts['train']} training and {counts['heldout']} held-out images to {args.out}")
    out(args.out)
    return 0
