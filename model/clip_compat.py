"""The calls of OpenAI's `clip` package, for code written against its tutorials:

    import model.clip_compat as clip

    model, preprocess = clip.load("ViT-B/32", device="cpu")
    image = preprocess(Image.open("cat.png")).unsqueeze(0)
    text = clip.tokenize(["a diagram", "a dog", "a cat"])
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(text)
        logits_per_image, logits_per_text = model(image, text)
        probs = logits_per_image.softmax(dim=-1)

`load` takes any clipsearch spec (OpenAI names resolve to open_clip's `openai` weights), so the
same snippet runs a LAION, SigLIP or fine-tuned model. `tokenize` is OpenAI's: CLIP's BPE at a
context of 77, as `clip.tokenize`; models with another tokenizer take `model.tokenize(texts)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import Encoder

CONTEXT_LENGTH = 77


def available_models() -> list[str]:
    """OpenAI's model names, as `clip.available_models()` lists them."""
    from .open_clip_models import openai_names

    return list(openai_names())


def load(
    name: str, device: str | torch.device | None = None, jit: bool = False, **_: object
) -> tuple[CompatModel, Callable]:
    """(model, preprocess) for `name` (any --model spec); `jit` is accepted and ignored."""
    from .loader import load_encoder

    enc = load_encoder(name, device=device)
    return CompatModel(enc), enc.preprocess


def tokenize(
    texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH, truncate: bool = False
) -> torch.Tensor:
    """OpenAI CLIP's BPE ids, (n, context_length) int64, zero-padded; a text that does not fit
    is an error unless truncate=True (then it ends in the end-of-text token), as in `clip`."""
    from open_clip.tokenizer import _tokenizer

    texts = [texts] if isinstance(texts, str) else list(texts)
    sot, eot = _tokenizer.encoder["<start_of_text>"], _tokenizer.encoder["<end_of_text>"]
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [sot, *_tokenizer.encode(text), eot]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text} is too long for context length {context_length}")
            ids = [*ids[: context_length - 1], eot]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


class CompatModel(nn.Module):
    """encode_image / encode_text (unnormalised, as in `clip`) and forward → the logits pair."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.module = encoder.module

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Ids from this model's own tokenizer (any family)."""
        return self.encoder.tokenize(list(texts))["input_ids"]

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(image.to(self.encoder.device)).float()

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        ids = text.to(self.encoder.device)
        mask = (ids != 0).long()  # CLIP's BPE pads with 0 (open_clip's towers ignore the mask)
        return self.module.encode_text(ids, mask).float()

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.normalize(self.encode_image(image), dim=-1)  # (n_images, d)
        txt = F.normalize(self.encode_text(text), dim=-1)  # (n_texts, d)
        logits_per_image = self.encoder.logit_scale * img @ txt.T  # (n_images, n_texts)
        return logits_per_image, logits_per_image.T
