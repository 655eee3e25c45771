"""spatialize on the models people use, built from their configs with random weights (nothing is
downloaded): Hugging Face GPT-2 (Conv1D), GPT-Neo, BERT and Llama (a gated MLP); torchvision
ResNet-50, ConvNeXt-T (depthwise), MobileNetV3 and EfficientNet-B0 (grouped, depthwise, squeeze-
excite gates); timm's ViT. Each: the costs on the fused backend match the reference backend,
gradients reach every selected weight and every position, and a state_dict round trip restores
the positions."""
from __future__ import annotations

import pytest
import torch

from spatial_kernels.nn import spatialize

from ..helpers import needs


def _hf(kind: str):
    transformers = needs("transformers")
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4,
                                                                    n_positions=32, bos_token_id=0, eos_token_id=0))
    if kind == "gpt-neo":
        return transformers.GPTNeoForCausalLM(transformers.GPTNeoConfig(
            vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, attention_types=[[["global"], 2]],
            max_position_embeddings=32, intermediate_size=64, bos_token_id=0, eos_token_id=0))
    if kind == "bert":
        return transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                              num_attention_heads=4, intermediate_size=64))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, bos_token_id=0, eos_token_id=0))


def _torchvision(kind: str):
    tv = needs("torchvision")
    return {"resnet50": tv.models.resnet50, "convnext_tiny": tv.models.convnext_tiny,
            "mobilenet_v3_small": tv.models.mobilenet_v3_small, "efficientnet_b0": tv.models.efficientnet_b0}[kind]()


def _vit():
    timm = needs("timm")
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=48,
                             depth=2, num_heads=3, num_classes=10)


# model, the layers a user gives (as README's table shows), and what the sheets must say
MODELS = {
    "gpt2": (lambda: _hf("gpt2"), ["transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"], {}),
    "gpt-neo": (lambda: _hf("gpt-neo"), ["transformer.h.*.mlp.c_fc", "transformer.h.*.mlp.c_proj"], {}),
    "bert": (lambda: _hf("bert"), ["encoder.layer.*.intermediate.dense", "encoder.layer.*.output.dense"], {}),
    "llama": (lambda: _hf("llama"), ["model.layers.*.mlp.*_proj"], {"gated": 2}),
    "resnet50": (lambda: _torchvision("resnet50"), ["layer1.**"], {}),
    "convnext_tiny": (lambda: _torchvision("convnext_tiny"), ["features.1.**"], {"depthwise": True}),
    "mobilenet_v3_small": (lambda: _torchvision("mobilenet_v3_small"), ["features.1.**", "features.2.**"],
                           {"depthwise": True}),
    "efficientnet_b0": (lambda: _torchvision("efficientnet_b0"), ["features.1.**"], {"depthwise": True}),
    "vit": (_vit, ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2"], {}),
    # a grouped conv into a grouped transposed conv (weight (C_in, C_out / G, k, k)): one sheet between
    "conv-transpose": (lambda: torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2), torch.nn.ReLU(),
                                                   torch.nn.ConvTranspose2d(8, 6, 3, groups=2)), ["0", "2"], {}),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_spatialize_the_models_people_use(name):
    build, layers, expect = MODELS[name]
    torch.manual_seed(0)
    model = build()
    costs = spatialize(model, layers, generator=torch.Generator().manual_seed(0))
    assert costs.layers and "layer" in costs.summary()
    if expect.get("gated"):  # a gated MLP: gate_proj and up_proj write one sheet, which down_proj reads
        gated = [s for s in costs.sheets.values() if s.gated]
        assert len(gated) == expect["gated"]
        for s in gated:
            assert {w.rsplit(".", 1)[1] for w in s.writers} == {"gate_proj", "up_proj"}
            assert [r.rsplit(".", 1)[1] for r in s.readers] == ["down_proj"]
    if expect.get("depthwise"):
        assert any(g.groups > 1 and g.groups == g.n_in for g in costs.geometry.values()), "no depthwise layer taken"
    ref = spatialize(model, layers, backend="reference", positions=dict(
        (s.name, costs.positions[s.key]) for s in costs.sheets.values()))
    alpha = {n: 0.5 + i / 10 for i, n in enumerate(costs.layers)}
    fused, truth = costs(alpha, 2.0), ref(alpha, 2.0)
    torch.testing.assert_close(fused, truth, rtol=2e-5, atol=1e-6)
    params = [m.weight for n, m in model.named_modules() if n in costs.layers] + list(costs.positions.values())
    g_fused = torch.autograd.grad(costs(alpha, 2.0), params)
    g_truth = torch.autograd.grad(ref(alpha, 2.0), params)
    for p, a, b in zip(params, g_fused, g_truth):
        assert a.shape == p.shape
        torch.testing.assert_close(a, b, rtol=2e-4, atol=1e-6 * max(1.0, float(b.abs().max())))
        assert float(a.abs().sum()) > 0  # the gradient reaches every weight and every sheet
    # a state_dict round trip restores the positions
    state = {k: v.clone() for k, v in costs.state_dict().items()}
    again = spatialize(model, layers, generator=torch.Generator().manual_seed(1))
    assert not all(torch.equal(state[k], v) for k, v in again.state_dict().items())
    again.load_state_dict(state)
    for k, v in again.state_dict().items():
        assert torch.equal(v, state[k])


def test_a_star_stays_within_a_dotted_segment():
    model = _hf("bert")
    costs = spatialize(model, ["encoder.layer.*.output.dense"])
    assert costs.layers == ["encoder.layer.0.output.dense", "encoder.layer.1.output.dense"]  # not attention.output
    assert len(spatialize(model, ["encoder.**.dense"]).layers) == 2 * 3  # attention.output, intermediate, output
    with pytest.raises(ValueError, match=r"'encoder\*output.dense' matches no module.*'\*\*' across segments"):
        spatialize(model, ["encoder*output.dense"])  # '*' does not cross the dots


def test_bad_layers_name_the_layer_and_what_is_supported():
    transformers = needs("transformers")
    model = _hf("gpt2")
    with pytest.raises(TypeError, match="none of them a supported layer: nn.Linear"):
        spatialize(model, ["transformer.wte"])  # an embedding
    conv = model.transformer.h[0].mlp.c_fc
    conv.nf = 99  # a Conv1D whose weight does not fit its nf
    with pytest.raises(ValueError, match=r"transformer.h.0.mlp.c_fc' is a Conv1D with nf=99, but its weight has shape"):
        spatialize(model, ["transformer.h.0.mlp.c_fc"])
    assert transformers  # imported


def test_summary_names_groups_and_layouts():
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, groups=2), torch.nn.ReLU(),
                                torch.nn.ConvTranspose2d(8, 4, 3, groups=4))
    text = spatialize(model, ["0", "2"]).summary()
    assert "Conv2d groups=2" in text and "ConvTranspose2d groups=4 (in, out)" in text and "8x2x3x3" in text
