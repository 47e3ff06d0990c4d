"""Encoder benchmark: starter build time, encode throughput, and wrapper overhead as a ratio.

    python -m benchmarks.encoder [--model starter] [--images 64] [--texts 512] [--repeat 5]

`images/s` and `texts/s` go through the public contract (encode_images / encode_texts, including
preprocessing and tokenisation); the ratios compare our encode path against the raw tower forward
on the very same tensors, measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from benchmarks._common import report, timeit


def sample_images(n: int):
    import skimage.data
    from PIL import Image

    photos = [
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.astronaut(),
        skimage.data.rocket(),
    ]
    return [Image.fromarray(photos[i % len(photos)]) for i in range(n)]


def sample_texts(n: int) -> list[str]:
    subjects = ["a cat", "a cup of coffee", "a red car", "two dogs", "a rocket", "a bowl of soup"]
    places = ["on a table", "in the snow", "at night", "on a beach", "in a kitchen"]
    return [f"a photo of {subjects[i % 6]} {places[i % 5]}" for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="starter")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-build", action="store_true", help="do not time a fresh starter build")
    args = ap.parse_args()

    from model import load_encoder

    results: dict = {}
    if args.model == "starter" and not args.skip_build:
        from model.starter import build_starter

        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            build_starter(f"{d}/starter")
            results["starter_build_s"] = time.perf_counter() - t0

    enc = load_encoder(args.model, device=None, image_batch_size=args.batch_size)
    images, texts = sample_images(args.images), sample_texts(args.texts)

    img_t = timeit(lambda: enc.encode_images(images), repeat=args.repeat)
    txt_t = timeit(lambda: enc.encode_texts(texts), repeat=args.repeat)
    results["images_per_s"] = args.images / img_t["median_s"]
    results["texts_per_s"] = args.texts / txt_t["median_s"]

    # wrapper overhead: our encode_pixels vs the raw module forward on the same pixel tensors
    pixels = torch.stack([enc.preprocess(im) for im in images])
    module = enc.module

    def raw_images():
        with torch.inference_mode():
            for i in range(0, len(pixels), args.batch_size):
                module.encode_image(pixels[i : i + args.batch_size].to(enc.device))

    raw_t = timeit(raw_images, repeat=args.repeat)
    ours_t = timeit(lambda: enc.encode_pixels(pixels), repeat=args.repeat)
    results["encode_pixels_vs_raw_forward"] = raw_t["median_s"] / ours_t["median_s"]

    # text padding: pad to the longest text in the batch vs fixed max_length padding
    short = ["a cat"] * 128
    tok_fixed = enc.tokenizer(
        short,
        padding="max_length",
        truncation=True,
        max_length=enc.text.max_length,
        return_tensors="pt",
    )

    def fixed_padding():
        with torch.inference_mode():
            module.encode_text(tok_fixed["input_ids"], tok_fixed["attention_mask"])

    fixed_t = timeit(fixed_padding, repeat=args.repeat)
    dyn_t = timeit(lambda: enc.encode_texts(short), repeat=args.repeat)
    results["short_query_speedup_vs_fixed_padding"] = fixed_t["median_s"] / dyn_t["median_s"]

    rows = [
        ("model", enc.spec),
        ("device", str(enc.device)),
        ("threads", str(torch.get_num_threads())),
    ]
    if "starter_build_s" in results:
        rows.append(("starter build", f"{results['starter_build_s']:.1f} s"))
    rows += [
        ("encode_images", f"{results['images_per_s']:.1f} images/s (batch {args.batch_size})"),
        ("encode_texts", f"{results['texts_per_s']:.0f} texts/s"),
        ("encode_pixels ÷ raw forward", f"{results['encode_pixels_vs_raw_forward']:.3f} (≥ 0.95)"),
        (
            "short queries: dynamic ÷ fixed padding",
            f"{results['short_query_speedup_vs_fixed_padding']:.1f}× faster",
        ),
    ]
    report("encoder", results, rows)


if __name__ == "__main__":
    main()
