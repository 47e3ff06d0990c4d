"""The clipsearch dual encoder: a timm image tower and a transformers text tower, projected into
one space. Everything that trains, indexes or serves a clipsearch checkpoint goes through here."""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel

from .config import DualEncoderConfig, ImageTowerConfig, TextTowerConfig

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the learned temperature at 100


class ConSEHead(nn.Module):
    """ConSE (Norouzi et al., 2014): embed an image as the probability-weighted mix of the text
    embeddings of its top-T predicted classes, so a classifier lands in a text space."""

    def __init__(self, num_classes: int, embed_dim: int, top_t: int) -> None:
        super().__init__()
        self.top_t = top_t
        self.class_embeddings = nn.Parameter(torch.zeros(num_classes, embed_dim))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.float().softmax(dim=-1)  # (B, C)
        top_p, top_i = probs.topk(self.top_t, dim=-1)  # (B, T)
        top_p = top_p / top_p.sum(dim=-1, keepdim=True)
        class_emb = F.normalize(self.class_embeddings, dim=-1)[top_i]  # (B, T, D)
        return (top_p.unsqueeze(-1) * class_emb).sum(dim=1)  # (B, D)


class ImageTower(nn.Module):
    def __init__(self, cfg: ImageTowerConfig, embed_dim: int) -> None:
        super().__init__()
        self.trunk = timm.create_model(
            cfg.timm_name, pretrained=False, num_classes=cfg.num_classes, **cfg.timm_kwargs
        )
        width = cfg.num_classes or self.trunk.num_features
        if cfg.head == "conse":
            if not cfg.num_classes:
                raise ValueError("the conse head needs an image tower with num_classes > 0")
            self.head: nn.Module = ConSEHead(cfg.num_classes, embed_dim, cfg.conse_top_t)
        elif cfg.head == "linear":
            self.head = nn.Linear(width, embed_dim, bias=False)
        else:
            if width != embed_dim:
                raise ValueError(f"head 'none' needs tower width {width} == embed_dim {embed_dim}")
            self.head = nn.Identity()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(pixels))  # (B, 3, H, W) -> (B, D)


class TextTower(nn.Module):
    def __init__(self, cfg: TextTowerConfig, embed_dim: int) -> None:
        super().__init__()
        hf = dict(cfg.hf_config)
        model_type = hf.pop("model_type")
        self.pooling = cfg.pooling
        self.trunk = AutoModel.from_config(AutoConfig.for_model(model_type, **hf))
        width = self.trunk.config.hidden_size
        if cfg.head == "linear":
            self.head: nn.Module = nn.Linear(width, embed_dim, bias=False)
        else:
            if width != embed_dim:
                raise ValueError(f"head 'none' needs text width {width} == embed_dim {embed_dim}")
            self.head = nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "eos":  # last real token, as CLIP's text transformer does
            last = attention_mask.sum(dim=1) - 1  # (B,)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:  # mean over real tokens only; padding must not change the embedding
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-6)
        return self.head(pooled)  # (B, D)


class DualEncoder(nn.Module):
    """encode_image / encode_text return unnormalised (B, D); forward returns the CLIP triple."""

    def __init__(self, cfg: DualEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.visual = ImageTower(cfg.image, cfg.embed_dim)
        self.text = TextTower(cfg.text, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(cfg.init_logit_scale)))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids, attention_mask)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at 100 (the stored log value is clamped too when training)."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img = F.normalize(self.encode_image(pixels).float(), dim=-1)  # (B, D)
        txt = F.normalize(self.encode_text(input_ids, attention_mask).float(), dim=-1)  # (B', D)
        return img, txt, self.scale()
