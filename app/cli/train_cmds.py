"""`clipsearch train`, `clipsearch eval` and `clipsearch data shapes`: contrastive training,
retrieval evaluation and the synthetic shapes dataset. Training code is imported only here."""

from __future__ import annotations

import argparse

from ._output import emit_json, fail, info, out


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    t = sub.add_parser(
        "train",
        help="train or fine-tune a dual encoder contrastively on image–caption pairs",
        formatter_class=fmt,
        epilog="examples:\n"
        "  clipsearch data shapes --out data/shapes --n 2000\n"
        "  clipsearch train --train data/shapes/train.csv --val data/shapes/heldout.csv \\\n"
        "      --out runs/shapes --init starter --image-head linear --lock-image --steps 300\n"
        "  clipsearch train --train captions.csv --out runs/ft \\\n"
        "      --init hf:openai/clip-vit-base-patch32 --lr 1e-5 --batch-size 256 --accum-steps 4\n"
        "  clipsearch train --config run.yaml --out runs/ft --resume\n"
        "  torchrun --nproc_per_node 2 -m app.cli train --config run.yaml --out runs/ddp\n"
        "values given on the command line override those in --config",
    )
    t.add_argument("--train", help="training data: .csv/.tsv/.jsonl manifest, folder, .tar shards")
    t.add_argument("--val", help="validation data (same formats) for Recall@K during training")
    t.add_argument("--out", help="output directory (final model, train_state/, metrics.csv)")
    t.add_argument(
        "--init",
        help="scratch (default) | starter | hf:<hub id or dir> | <clipsearch checkpoint dir>",
    )
    t.add_argument("--config", help="a JSON or YAML file of training options")
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

    e = sub.add_parser(
        "eval",
        help="Recall@1/5/10 (both directions) and zero-shot accuracy on image–caption data",
        formatter_class=fmt,
        epilog="examples:\n"
        "  clipsearch eval --model runs/shapes --data data/shapes/heldout.csv\n"
        "  clipsearch eval --model hf:openai/clip-vit-base-patch32 --data val.jsonl --json",
    )
    e.add_argument("--model", default="starter", metavar="SPEC", help="model spec")
    e.add_argument("--data", required=True, help="manifest, folder or .tar shards")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if present)")
    e.add_argument("--json", action="store_true", help='print {"t2i": {...}, "i2t": {...}, ...}')
    e.set_defaults(func=cmd_eval)

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


# TrainConfig's fields as (name, type, help). Kept here rather than read from the dataclass so
# building the parser imports nothing heavy; tests/train/test_cli.py checks they stay in sync.
CONFIG_FLAGS: list[tuple[str, type, str]] = [
    ("image_tower", str, "scratch: timm model name"),
    ("text_tower", str, "scratch: transformers model id/dir (config + tokenizer)"),
    ("pretrained_towers", bool, "scratch: start the towers from their pretrained weights"),
    ("model_config", str, "scratch: a DualEncoderConfig JSON instead of the tower names"),
    ("tokenizer", str, "tokenizer dir/id (default: the text tower's)"),
    ("embed_dim", int, "scratch: shared embedding width"),
    ("image_head", str, "starter: keep (ConSE) | linear (pooled features + linear head)"),
    ("loss", str, "infonce | siglip"),
    ("steps", int, "optimizer steps"),
    ("batch_size", int, "global batch (all processes, all accumulation chunks)"),
    ("accum_steps", int, "chunks per batch; negatives stay full-batch"),
    ("lr", float, "peak learning rate"),
    ("lr_image", float, "image tower learning rate (default: --lr)"),
    ("lr_text", float, "text tower learning rate (default: --lr)"),
    ("weight_decay", float, "AdamW decay (never on norms, biases, temperature)"),
    ("beta1", float, "AdamW beta1"),
    ("beta2", float, "AdamW beta2"),
    ("eps", float, "AdamW eps"),
    ("warmup_steps", int, "linear warmup steps before the cosine decay"),
    ("min_lr_ratio", float, "cosine floor as a fraction of the peak"),
    ("grad_clip", float, "max global gradient norm (0: off)"),
    ("precision", str, "auto | fp32 | bf16 | fp16 (AMP on GPU)"),
    ("lock_image", bool, "LiT: freeze the image tower's trunk"),
    ("lock_image_unlocked_groups", int, "leave this many last image layer groups trainable"),
    ("lock_text", bool, "freeze the text tower's trunk"),
    ("lock_text_unlocked_layers", int, "leave this many last text layers trainable"),
    ("seed", int, "seed for initialisation, data order and dropout"),
    ("workers", int, "DataLoader worker processes"),
    ("device", str, "cpu, cuda … (default: CUDA if present)"),
    ("augment", bool, "mild random resized crops (default: the eval transform)"),
    ("save_every", int, "step checkpoint interval for --resume (0: only at the end)"),
    ("keep_checkpoints", int, "step checkpoints to keep"),
    ("eval_every", int, "evaluate --val every N steps (0: only at the end)"),
    ("eval_batch_size", int, "batch size for evaluation"),
    ("log_every", int, "metrics.csv interval in steps"),
    ("tensorboard", bool, "also write TensorBoard events (if installed)"),
    ("progress", bool, "show a progress bar"),
]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field; None means 'not given', so --config values stay."""
    g = p.add_argument_group("training options (defaults: docs/training.md)")
    for name, kind, help_ in CONFIG_FLAGS:
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            g.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper(), help=help_)


def cmd_train(args: argparse.Namespace) -> int:
    from model.train.config import make_config
    from model.train.loop import train

    names = ["train", "val", "out", "init"] + [name for name, _, _ in CONFIG_FLAGS]
    overrides = {name: getattr(args, name, None) for name in names}
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
    from model.train.evaluate import evaluate

    data = load_pairs(args.data)  # before the model: bad data fails fast
    try:
        enc = load_encoder(args.model, device=args.device)
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
    from model.train.shapes import generate

    try:
        counts = generate(
            args.out, n=args.n, seed=args.seed, n_heldout=args.heldout, side=args.size
        )
    except ValueError as e:
        fail(str(e))
    info(f"wrote {counts['train']} training and {counts['heldout']} held-out images to {args.out}")
    out(args.out)
    return 0
