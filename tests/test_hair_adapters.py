"""Identity and style tokens as diffusers IP-Adapters on a 9-channel SDXL-shaped UNet (seed 000, stage 2)."""
from __future__ import annotations

import torch

from pipelines.hair import ip_adapters

SMALL_SDXL_INPAINT = dict(
    sample_size=16, in_channels=9, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 1), attention_head_dim=(2, 4), cross_attention_dim=32, norm_num_groups=8,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8)


def unet_and_inputs():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SMALL_SDXL_INPAINT).eval()
    cond = dict(encoder_hidden_states=torch.randn(1, 5, 32),
                added_cond_kwargs={"text_embeds": torch.randn(1, 32), "time_ids": torch.zeros(1, 6)})
    return unet, torch.randn(1, 9, 16, 16), torch.tensor([10]), cond


def test_adapters_at_zero_scale_leave_the_unet_as_it_was_and_steer_it_otherwise():
    unet, x, t, cond = unet_and_inputs()
    with torch.no_grad():
        base = unet(x, t, **cond).sample
    states = [ip_adapters.fresh_state(unet, 12, seed=0), ip_adapters.fresh_state(unet, 20, seed=1)]
    unet.requires_grad_(False)
    params = ip_adapters.attach(unet, states, scales=[0.0, 0.0])
    cond["added_cond_kwargs"]["image_embeds"] = [torch.randn(1, 1, 12), torch.randn(1, 1, 20)]
    with torch.no_grad():
        silent = unet(x, t, **cond).sample
        for processor in unet.attn_processors.values():
            if hasattr(processor, "to_k_ip"):
                processor.scale = [1.0, 0.0]
        identity_only = unet(x, t, **cond).sample
    assert torch.allclose(silent, base, atol=1e-6)
    assert (identity_only - base).abs().max() > 1e-3
    # trained: both projections and every cross-attention's extra key/value layers, nothing of the base
    cross = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    assert len(params) == 2 * 4 + len(cross) * 2 * 2 and all(p.requires_grad for p in params)
    assert not any(p.requires_grad for name, p in unet.named_parameters()
                   if "encoder_hid_proj" not in name and "processor" not in name)


def test_the_state_is_in_the_stock_layout_the_library_loads():
    unet, *_ = unet_and_inputs()
    state = ip_adapters.fresh_state(unet, 12)
    assert set(state["image_proj"]) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    cross = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    assert sorted(state["ip_adapter"]) == sorted(f"{1 + 2 * i}.to_{kv}_ip.weight" for i in range(len(cross))
                                                 for kv in "kv")
    ip_adapters.attach(unet, [state])
    first = unet.get_submodule(cross[0].removesuffix(".processor"))
    assert torch.equal(unet.attn_processors[cross[0]].to_k_ip[0].weight, first.to_k.weight)
