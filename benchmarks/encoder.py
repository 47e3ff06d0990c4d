"""Encoder benchmark: starter build time, encode throughput, and wrapper overhead as a ratio.

    python -m benchmarks.encoder [--model starter] [--images 64] [--texts 512] [--repeat 5]

`images/s` and `texts/s` go through the public contract (encode_images / encode_texts, including
preprocessing and tokenisation); the ratios compare our encode path against the raw tower forward
on the very same tensors, measured in the same run. Model FLOP utilisation (MFU) = the towers'
FLOPs (counted by torch's FlopCounterMode) × rate ÷ this machine's fp32 GEMM rate (probed here,
or passed in by the suite with --peak-gflops).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from benchmarks._common import add_suite_args, interleaved, report, target, timeit


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


def forward_flops(fn) -> int:
    """FLOPs of one call, as torch counts them (matmuls and convolutions: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="starter")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the encoder's")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-build", action="store_true", help="do not time a fresh starter build")
    ap.add_argument("--peak-gflops", type=float, default=None, help="fp32 GEMM rate for MFU")
    add_suite_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.images, args.texts = min(args.images, 32), min(args.texts, 128)
    if args.peak_gflops is None:
        from benchmarks.probes import gemm_gflops

        args.peak_gflops = gemm_gflops()

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
    fmt = torch.channels_last if enc.channels_last else torch.contiguous_format
    raw_pixels = pixels.contiguous(memory_format=fmt)

    def raw_images(x=raw_pixels):
        with torch.inference_mode():
            for i in range(0, len(x), enc.image_batch_size):
                module.encode_image(x[i : i + enc.image_batch_size].to(enc.device))

    img_cmp = interleaved(raw_images, lambda: enc.encode_pixels(pixels), repeat=args.repeat)
    raw_t, ours_t = (
        {"median_s": img_cmp["baseline_median_s"]},
        {"median_s": img_cmp["ours_median_s"]},
    )
    results["encode_pixels_vs_raw_forward"] = img_cmp["ratio"]
    if enc.channels_last:  # what the NHWC layout gains over the default one, same batches
        module.to(memory_format=torch.contiguous_format)
        default_t = timeit(lambda: raw_images(pixels), repeat=args.repeat)
        module.to(memory_format=torch.channels_last)
        results["channels_last_speedup"] = default_t["median_s"] / raw_t["median_s"]

    # the same for texts: raw = tokenizer + text tower forward, padded to the longest in the batch
    def raw_texts():
        with torch.inference_mode():
            for i in range(0, len(texts), enc.text_batch_size):
                tok = enc.tokenizer(
                    texts[i : i + enc.text_batch_size],
                    padding=True,
                    truncation=True,
                    max_length=enc.text.max_length,
                    return_tensors="pt",
                )
                module.encode_text(tok["input_ids"], tok["attention_mask"])

    txt_cmp = interleaved(raw_texts, lambda: enc.encode_texts(texts), repeat=args.repeat)
    ours_txt_t = {"median_s": txt_cmp["ours_median_s"]}
    results["encode_texts_vs_raw_forward"] = txt_cmp["ratio"]

    # model FLOP utilisation of the tower forwards against the probed GEMM rate
    image_flops = forward_flops(lambda: module.encode_image(pixels[:1]))
    tok = enc.tokenizer(texts, padding=True, return_tensors="pt")
    text_flops = forward_flops(lambda: module.encode_text(tok["input_ids"], tok["attention_mask"]))
    pixel_rate = len(pixels) / ours_t["median_s"]
    text_rate = args.texts / ours_txt_t["median_s"]
    results["peak_gemm_gflops"] = args.peak_gflops
    results["image_gflops_per_image"] = image_flops / 1e9
    results["image_mfu"] = image_flops * pixel_rate / (args.peak_gflops * 1e9)
    results["text_gflops_per_text"] = text_flops / len(texts) / 1e9
    results["text_mfu"] = text_flops / len(texts) * text_rate / (args.peak_gflops * 1e9)

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
        (
            "repetitions",
            f"{args.repeat} timed after 1 warm-up; ratios: median of alternating rounds",
        ),
        ("device", str(enc.device)),
        ("threads", str(torch.get_num_threads())),
    ]
    if "starter_build_s" in results:
        rows.append(("starter build", f"{results['starter_build_s']:.1f} s"))
    rows += [
        ("encode_images", f"{results['images_per_s']:.1f} images/s (batch {enc.image_batch_size})"),
        ("encode_texts", f"{results['texts_per_s']:.0f} texts/s"),
        *([("channels-last ÷ default layout", f"{results['channels_last_speedup']:.2f}× faster")]
          if "channels_last_speedup" in results else []),
        ("image tower", f"{results['image_gflops_per_image']:.2f} GFLOP/image, "
                        f"MFU {results['image_mfu']:.1%} of {args.peak_gflops:.0f} GFLOP/s"),
        ("text tower", f"{results['text_gflops_per_text']:.3f} GFLOP/text, "
                       f"MFU {results['text_mfu']:.1%}"),
    ]  # fmt: skip
    mfu = f"image-tower MFU {results['image_mfu']:.0%}, text-tower {results['text_mfu']:.0%}"
    targets = [
        target("encoder_images_overhead", "encode_pixels ÷ raw image-tower forward (speed)",
               results["encode_pixels_vs_raw_forward"], 0.95, note=mfu),
        target("encoder_texts_overhead", "encode_texts ÷ raw tokenizer + text-tower forward",
               results["encode_texts_vs_raw_forward"], 0.95),
        target("encoder_dynamic_padding", "short queries: pad to longest ÷ fixed max-length",
               results["short_query_speedup_vs_fixed_padding"], 3.0, unit="×"),
    ]  # fmt: skip
    report("encoder", results, rows, targets, json_out=args.json_out)


if __name__ == "__main__":
    main()
