"""Shared by the SAM oracles: imports Meta's segment_anything without torchvision, and builds a
CrackSAM-shaped model from Meta's own modules."""
import sys
import types
from functools import partial


def _stub_torchvision():
    # segment_anything's package __init__ imports its predictor and mask generator, which import a few
    # torchvision names at import time. The oracles never call them; the CPU venv has no torchvision.
    if "torchvision" in sys.modules:
        return

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision is stubbed in the test oracles")

    names = {
        "torchvision": {},
        "torchvision.ops": {},
        "torchvision.ops.boxes": {"batched_nms": unavailable, "box_area": unavailable},
        "torchvision.transforms": {},
        "torchvision.transforms.functional": {"resize": unavailable, "to_pil_image": unavailable},
    }
    for name, attrs in names.items():
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
        sys.modules[name] = module
    sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]
    sys.modules["torchvision.ops"].boxes = sys.modules["torchvision.ops.boxes"]
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]


_stub_torchvision()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

CONFIGS = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=[7, 15, 23, 31]),
    # Small, with window and global blocks and a 17×17 token grid (not a multiple of 14: padding).
    "small": dict(embed_dim=48, depth=4, num_heads=4, global_attn_indexes=[1, 3]),
}


def build_sam(name, image_size=448, num_classes=1):
    c = CONFIGS[name]
    grid = image_size // 16
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=c["depth"], embed_dim=c["embed_dim"], img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=c["num_heads"], patch_size=16,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=c["global_attn_indexes"], window_size=14,
            out_chans=256),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                     input_image_size=(image_size, image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=num_classes,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
                                 transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[0, 0, 0], pixel_std=[1, 1, 1])


def randomize(model, seed):
    """Every parameter random (Meta's init leaves pos_embed, rel_pos and norms constant, which would hide
    indexing mistakes); norm weights stay near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)


def _crack_sam_parts(sam, images):
    """CrackSAM's forward from Meta's modules: no prompts, all num_classes+1 masks, and the upscaled
    embedding resized ×4 bilinearly before the hypernetwork product (the IoU head is left out)."""
    b = images.shape[0]
    size = images.shape[-1]
    embedding = sam.image_encoder(images)
    sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
    md = sam.mask_decoder
    out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0).unsqueeze(0).expand(b, -1, -1)
    tokens = torch.cat((out_tokens, sparse.expand(b, -1, -1)), dim=1)
    src = embedding + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(b, -1, -1, -1)
    _, c, h, w = src.shape
    hs, keys = md.transformer(src, pos, tokens)
    mask_out = hs[:, 1:1 + md.num_mask_tokens, :]
    up = md.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
    up = F.interpolate(up, size=(size, size), mode="bilinear", align_corners=False)
    hyper = torch.stack([md.output_hypernetworks_mlps[i](mask_out[:, i, :]) for i in range(md.num_mask_tokens)], dim=1)
    _, uc, uh, uw = up.shape
    logits = (hyper @ up.view(b, uc, uh * uw)).view(b, -1, uh, uw)
    return dict(embedding=embedding, tokens=tokens, src=src, pos=pos, hs=hs, keys=keys, logits=logits)


def crack_sam_forward(sam, images):
    """CrackSAM's forward with every intermediate, the IoU predictions and the dense positional encoding."""
    parts = _crack_sam_parts(sam, images)
    parts.update(iou=sam.mask_decoder.iou_prediction_head(parts["hs"][:, 0, :]), dense_pe=sam.prompt_encoder.get_dense_pe())
    return parts


def crack_sam_logits(sam, images):
    """CrackSAM's forward as training runs it: logits only (no IoU head, one dense PE)."""
    return _crack_sam_parts(sam, images)["logits"]
