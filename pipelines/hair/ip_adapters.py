"""Identity and style tokens for the hair inpainting UNet, as diffusers' IP-Adapters (seed 000, stage 2).

Each adapter is one embedding (a face-identity vector, a style-image vector) projected to 4 tokens that every
cross-attention reads through its own key/value layers, scaled per adapter. The weights are kept in the stock
IP-Adapter layout (``{"image_proj": {"proj.*", "norm.*"}, "ip_adapter": {"<n>.to_k_ip.weight", ...}}``), so that
the library's loader installs them and ``StableDiffusionXLInpaintPipeline`` runs them with ``ip_adapter_image_embeds``.
"""
from __future__ import annotations

import torch

TOKENS = 4  # the stock layout's "proj.weight" projection always makes 4 tokens
# diffusers' ImageProjection names its linear layer image_embeds; the stock files (and the loader) say proj
STOCK_NAMES = {"image_embeds.weight": "proj.weight", "image_embeds.bias": "proj.bias"}


def fresh_state(unet, embed_dim: int, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """A new adapter for ``unet`` in the stock layout: key/value layers start as copies of the text ones.

    Copying the text key/value weights (as IP-Adapter's authors initialise them) makes the new tokens attended to
    like text from the first step; the projection starts small so the base model's behaviour is kept at first.
    """
    gen = torch.Generator().manual_seed(seed)
    cross_dim = unet.config.cross_attention_dim
    image_proj = {"proj.weight": torch.randn(TOKENS * cross_dim, embed_dim, generator=gen) * 0.02,
                  "proj.bias": torch.zeros(TOKENS * cross_dim),
                  "norm.weight": torch.ones(cross_dim), "norm.bias": torch.zeros(cross_dim)}
    ip_adapter, key_id = {}, 1  # the loader's numbering: 1, 3, 5, ... over the cross-attentions in order
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        attention = unet.get_submodule(name.removesuffix(".processor"))
        ip_adapter[f"{key_id}.to_k_ip.weight"] = attention.to_k.weight.detach().float().cpu().clone()
        ip_adapter[f"{key_id}.to_v_ip.weight"] = attention.to_v.weight.detach().float().cpu().clone()
        key_id += 2
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def attach(unet, states: list[dict[str, dict[str, torch.Tensor]]], scales: list[float] | None = None) -> list:
    """Install adapters on ``unet`` with the library's loader; returns their trainable parameters.

    ``states`` are stock-layout dicts (from ``fresh_state`` or a saved model); ``scales`` one per adapter.
    """
    # The private loader is what load_ip_adapter calls once it has read the files; it needs no image encoder.
    unet._load_ip_adapter_weights(states)
    processors = [p for p in unet.attn_processors.values() if hasattr(p, "to_k_ip")]
    if scales is not None:
        for processor in processors:
            processor.scale = list(scales)
    params = list(unet.encoder_hid_proj.parameters())
    for processor in processors:
        params += list(processor.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def _cross_attention_processors(unet) -> list:
    """The IP-Adapter processors in the loader's order (that of ``unet.attn_processors``, self-attention skipped)."""
    return [p for name, p in unet.attn_processors.items() if not name.endswith("attn1.processor")]


def current_state(unet, index: int) -> dict[str, dict[str, torch.Tensor]]:
    """Adapter ``index`` of an attached ``unet`` in the stock layout (what ``attach`` reads back)."""
    projection = unet.encoder_hid_proj.image_projection_layers[index]
    image_proj = {STOCK_NAMES.get(k, k): v.detach().float().cpu().clone() for k, v in projection.state_dict().items()}
    ip_adapter = {}
    for n, processor in enumerate(_cross_attention_processors(unet)):
        ip_adapter[f"{1 + 2 * n}.to_k_ip.weight"] = processor.to_k_ip[index].weight.detach().float().cpu().clone()
        ip_adapter[f"{1 + 2 * n}.to_v_ip.weight"] = processor.to_v_ip[index].weight.detach().float().cpu().clone()
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


@torch.no_grad()
def load_state(unet, index: int, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Copy a stock-layout state into adapter ``index`` of an attached ``unet`` (resume)."""
    diffusers_names = {stock: ours for ours, stock in STOCK_NAMES.items()}
    unet.encoder_hid_proj.image_projection_layers[index].load_state_dict(
        {diffusers_names.get(k, k): v for k, v in state["image_proj"].items()})
    for n, processor in enumerate(_cross_attention_processors(unet)):
        processor.to_k_ip[index].weight.copy_(state["ip_adapter"][f"{1 + 2 * n}.to_k_ip.weight"])
        processor.to_v_ip[index].weight.copy_(state["ip_adapter"][f"{1 + 2 * n}.to_v_ip.weight"])
