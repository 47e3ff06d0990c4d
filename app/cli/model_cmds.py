"""`clipsearch model …`, `classify` and `embed`: the encoder layer from the command line."""

from __future__ import annotations

import argparse
import os

from model.backends import BACKENDS, DEFAULT_BACKEND
from model.default_model import DEFAULT_MODEL

from ._output import bar, emit_json, fail, info, out

DEFAULT_HELP = (
    f"default: the best model this machine can have, {DEFAULT_MODEL} when it is in the "
    "Hugging Face cache or the hub is reachable (fetched once), else the offline starter"
)
MODEL_HELP = (
    "model spec: default, starter, an OpenAI name (ViT-B/32, RN50, ...), open_clip:ARCH/TAG, "
    "open_clip:hf-hub:ORG/REPO, open_clip:local-dir:DIR, hf:<hub id or dir>, or a model dir; "
    f"`clipsearch model list` shows the names ({DEFAULT_HELP})"
)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", metavar="SPEC", help=MODEL_HELP)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: CUDA if present)")
    add_backend_arg(p)


# Settings.backend's variable (not imported from app.settings: --help stays free of pydantic;
# tests/app/cli/test_model_cmds.py checks the two agree)
BACKEND_ENV = "CLIPSEARCH_BACKEND"


def _backend_name(value: str) -> str:
    # argparse runs `type` on a string default too, so a bad CLIPSEARCH_BACKEND fails here,
    # with the same one-line error as a bad --backend
    if value not in BACKENDS:
        raise argparse.ArgumentTypeError(
            f"unknown backend {value!r} (from --backend or {BACKEND_ENV}); choose from "
            + ", ".join(BACKENDS)
        )
    return value


def add_backend_arg(p: argparse.ArgumentParser) -> None:
    # the same variable `serve` reads through Settings, so one setting covers every command
    p.add_argument(
        "--backend",
        default=os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND,
        type=_backend_name,
        metavar="{" + ",".join(BACKENDS) + "}",
        help=f"auto (default, or ${BACKEND_ENV}): ONNX Runtime on a CPU when the export matches "
        "PyTorch, else PyTorch; torch; onnx (same vectors as torch, CPU); onnx-int8 (int8 "
        "weights, a different fingerprint); see docs/benchmarks.md",
    )


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    m = sub.add_parser(
        "model",
        help="build or inspect models",
        formatter_class=fmt,
        epilog="examples:\n  clipsearch model starter\n"
        "  clipsearch model starter --out models/starter\n"
        "  clipsearch model list --family openai\n"
        "  clipsearch model list --json\n"
        "  clipsearch model info --model ViT-B/32\n"
        "  clipsearch model info --model hf:openai/clip-vit-base-patch32",
    )
    msub = m.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    s = msub.add_parser("starter", help="build the offline starter model checkpoint")
    s.add_argument("--out", default=None, help="directory to write (default: the model cache)")
    s.set_defaults(func=cmd_model_starter)
    ls = msub.add_parser("list", help="every known model name with its family, width, image size")
    ls.add_argument("--family", default=None, help="only this family (starter, openai, open_clip)")
    ls.add_argument("--json", action="store_true", help='print {"models": [...]}')
    ls.add_argument("--markdown", action="store_true", help="a Markdown table (docs/models.md)")
    ls.set_defaults(func=cmd_model_list)
    i = msub.add_parser("info", help="load a model and show its dim, temperature, fingerprint")
    add_model_args(i)
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_model_info)

    c = sub.add_parser(
        "classify",
        help="zero-shot classify an image against labels",
        formatter_class=fmt,
        epilog='examples:\n  clipsearch classify cat.jpg --labels "a cat,a dog,a cup of coffee"\n'
        '  clipsearch classify photo.png --labels "day,night" --template "a photo taken at {}."'
        " --json",
    )
    c.add_argument("image", help="image file (JPEG, PNG, WebP, GIF, BMP, TIFF)")
    c.add_argument("--labels", required=True, help='comma-separated labels, e.g. "a cat,a dog"')
    c.add_argument(
        "--template",
        action="append",
        dest="templates",
        metavar="TEMPLATE",
        help="prompt template with {} for the label (repeatable; default: an ensemble)",
    )
    c.add_argument("--json", action="store_true", help='print {"labels": [...], "model": ...}')
    add_model_args(c)
    c.set_defaults(func=cmd_classify)

    e = sub.add_parser(
        "embed",
        help="print embeddings of texts and/or images as JSON",
        formatter_class=fmt,
        epilog='examples:\n  clipsearch embed --text "a red car" --text "a bicycle"\n'
        "  clipsearch embed --image cat.jpg --model hf:openai/clip-vit-base-patch32",
    )
    e.add_argument("--text", action="append", default=[], help="a text to embed (repeatable)")
    e.add_argument("--image", action="append", default=[], help="an image file (repeatable)")
    add_model_args(e)
    e.set_defaults(func=cmd_embed)


def resolve_model_arg(spec: str | None) -> str:
    """--model as given, with `default` (or none given) resolved here, so that its one notice
    (the starter fallback, or the one-time fetch) is a CLI line, not a log record."""
    from model.default_model import is_default, resolve_default_model

    if spec is None or is_default(spec):
        return resolve_default_model(notify=info)
    return spec


def _load(args: argparse.Namespace):
    from model import load_encoder

    try:
        spec = resolve_model_arg(args.model)
        return load_encoder(spec, device=args.device, backend=args.backend)
    except ValueError as e:  # e.g. an unavailable device
        fail(str(e))


def cmd_model_starter(args: argparse.Namespace) -> int:
    from model.starter import build_starter, ensure_starter

    path = build_starter(args.out, progress=info) if args.out else ensure_starter()
    out(str(path))
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    from model.names import known_models

    every = known_models()
    rows = [m for m in every if args.family in (None, m.family)]
    if not rows:
        families = ", ".join(dict.fromkeys(m.family for m in every))
        fail(f"no models in family {args.family!r} (families: {families})")
    if args.json:
        emit_json({"models": [m.to_dict() for m in rows]})
        return 0
    if args.markdown:
        out("| name | family | embedding width | image size |\n| --- | --- | ---: | ---: |")
        for m in rows:
            out(f"| `{m.name}` | {m.family} | {m.embed_dim or '?'} | {m.image_size or '?'} |")
        return 0
    width = max(len(m.name) for m in rows)
    out(f"{'name':<{width}}  {'family':<9}  {'dim':>5}  {'image':>5}")
    for m in rows:
        out(f"{m.name:<{width}}  {m.family:<9}  {m.embed_dim or '?':>5}  {m.image_size or '?':>5}")
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    enc = _load(args)
    data = {
        "model": enc.spec,
        "backend": enc.backend,
        "dim": enc.dim,
        "logit_scale": round(enc.logit_scale, 4),
        "fingerprint": enc.fingerprint,
        "device": str(enc.device),
        "image_size": enc.preprocess_config.size,
        "text_max_length": enc.text.max_length,
    }
    if args.json:
        emit_json(data)
    else:
        for k, v in data.items():
            out(f"{k:16} {v}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from model import load_image
    from model.zeroshot import classify, parse_labels, validate_templates

    try:
        labels = parse_labels(args.labels)
        templates = validate_templates(args.templates)
    except ValueError as e:
        fail(str(e))
    load_image(args.image)  # check the file before the model loads: a bad file fails fast
    enc = _load(args)
    image = enc.load_image(args.image)  # decoded exactly as the indexer and the server do
    ranked = classify(enc, enc.encode_images([image]), labels, templates)[0]
    if args.json:
        emit_json(
            {"labels": [{"label": lb, "score": round(p, 6)} for lb, p in ranked], "model": enc.spec}
        )
        return 0
    width = max(len(lb) for lb, _ in ranked)
    for lb, p in ranked:
        out(f"{lb:<{width}}  {bar(p)}  {p:6.1%}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Prints what HTTP POST /embed answers: {"model", "dim", "texts": [[…]], "images": [[…]]},
    vectors in the order given (app.schemas.EmbedResponse, the one definition of that shape)."""
    from app.schemas import EmbedResponse
    from model import load_image

    if not args.text and not args.image:
        fail("give at least one --text or --image")
    for p in args.image:  # fail fast on a bad file, before the model loads
        load_image(p)
    enc = _load(args)
    images = [enc.load_image(p) for p in args.image]
    texts = enc.encode_texts(args.text) if args.text else []
    vecs = enc.encode_images(images) if images else []
    result = EmbedResponse(model=enc.spec, dim=enc.dim, texts=_rows(texts), images=_rows(vecs))
    emit_json(result.model_dump())
    return 0


def _rows(vectors) -> list[list[float]]:
    # rounded as the HTTP route rounds them: float32 carries ~7 significant digits
    return [[round(float(x), 7) for x in v] for v in vectors]
