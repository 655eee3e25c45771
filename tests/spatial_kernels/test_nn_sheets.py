"""Sheets follow the data: in every model family the residual stream is one sheet from block to
block, the channels around a permute are one sheet, and an op that cuts or broadcasts the channels
joins nothing. Built from configs with random weights (nothing is downloaded)."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from spatial_kernels.nn import spatialize

from .test_nn_models import _hf, _torchvision, _vit

# family: (model, layers, (block k's output layer, block k+1's input layer), an example input for
# the forward-pass driver, or None where the model brings its own: Hugging Face's dummy_inputs)
STREAMS = {
    "gpt2": (lambda: _hf("gpt2"), ["transformer.h.*.mlp.*"], ("transformer.h.0.mlp.c_proj", "transformer.h.1.mlp.c_fc")),
    "gpt-neo": (lambda: _hf("gpt-neo"), ["transformer.h.*.mlp.*"],
                ("transformer.h.0.mlp.c_proj", "transformer.h.1.mlp.c_fc")),
    "bert": (lambda: _hf("bert"), ["encoder.layer.*.intermediate.dense", "encoder.layer.*.output.dense"],
             ("encoder.layer.0.output.dense", "encoder.layer.1.intermediate.dense")),
    "llama": (lambda: _hf("llama"), ["model.layers.*.mlp.*_proj"],
              ("model.layers.0.mlp.down_proj", "model.layers.1.mlp.gate_proj")),
    "vit": (_vit, ["blocks.*.mlp.fc1", "blocks.*.mlp.fc2"], ("blocks.0.mlp.fc2", "blocks.1.mlp.fc1")),
    "resnet50": (lambda: _torchvision("resnet50"), ["layer1.**"], ("layer1.0.conv3", "layer1.1.conv1")),
    "convnext_tiny": (lambda: _torchvision("convnext_tiny"), ["features.1.**"],
                      ("features.1.0.block.5", "features.1.1.block.0")),
    "mobilenet_v3_small": (lambda: _torchvision("mobilenet_v3_small"), ["features.5.**", "features.6.**"],
                           ("features.5.block.3.0", "features.6.block.0.0")),
    "efficientnet_b0": (lambda: _torchvision("efficientnet_b0"), ["features.2.**"],
                        ("features.2.0.block.3.0", "features.2.1.block.0.0")),
}
IMAGE = {"vit": torch.randn(1, 3, 32, 32)}


def _partition(costs) -> set:
    return {frozenset([(w, "out") for w in s.writers] + [(r, "in") for r in s.readers]) for s in costs.sheets.values()}


@pytest.mark.parametrize("family", list(STREAMS))
def test_the_residual_stream_is_one_sheet_across_blocks(family):
    build, layers, (writer, reader) = STREAMS[family]
    torch.manual_seed(0)
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every family is followed whole: no warning of sheets kept apart
        costs = spatialize(model, layers)
    stream = costs.sheet(writer, "out")
    assert costs.sheet(reader, "in") == stream
    assert writer in stream.writers and reader in stream.readers and len(stream.writers) >= 2
    if family in ("vit", "resnet50", "convnext_tiny", "mobilenet_v3_small", "efficientnet_b0"):
        # the torch.fx trace (no shapes) and one forward pass (shapes known) give the same sheets
        x = IMAGE.get(family, torch.randn(1, 3, 64, 64))
        assert _partition(spatialize(model, layers, example=x)) == _partition(costs)


def test_convnext_depthwise_conv_and_the_linear_after_its_permute_share_a_sheet():
    model = _torchvision("convnext_tiny")
    for example in (None, torch.randn(1, 3, 64, 64)):
        c = spatialize(model, ["features.1.**"], example=example)
        for b in range(3):
            dw = c.sheet(f"features.1.{b}.block.0", "out")  # (N, C, H, W) -> Permute -> LayerNorm -> Linear
            assert c.sheet(f"features.1.{b}.block.3", "in") == dw and dw.size == 96
            assert c.geometry[f"features.1.{b}.block.0"].groups == 96  # depthwise
        # the block's Linear writes back through the Permute into the stream the next block reads
        assert c.sheet("features.1.0.block.5", "out") == c.sheet("features.1.1.block.0", "in")


def test_with_an_example_the_head_reads_the_stream_through_pooling_and_indexing():
    from torchvision.models import resnet18

    resnet = resnet18(num_classes=10)  # flatten(avgpool(x), 1): each channel's mean is that channel
    c = spatialize(resnet, ["layer4.1.conv2", "fc"], example=torch.randn(1, 3, 64, 64))
    assert c.sheet("fc", "in") == c.sheet("layer4.1.conv2", "out")
    vit = _vit()  # the class token x[:, 0] after the final norm: the residual channels
    c = spatialize(vit, ["blocks.*.mlp.fc2", "head"], example=torch.randn(1, 3, 32, 32))
    assert c.sheet("head", "in") == c.sheet("blocks.1.mlp.fc2", "out")


class Moves(nn.Module):
    """Conv1d channels through transpose (kept), a view that cuts them (not kept), a broadcast scale
    of one channel (joins nothing) and a slice of the channels (not kept)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 1)
        self.fc_t = nn.Linear(8, 8)  # reads conv's channels after transpose(1, 2)
        self.gate = nn.Linear(8, 1)  # one channel, broadcast over fc_t's eight
        self.fc_cut = nn.Linear(4, 2)  # reads a view (B, L, 2, 4): half of each channel block
        self.fc_slice = nn.Linear(4, 2)  # reads fc_t's first four channels

    def forward(self, x):
        h = self.fc_t(self.conv(x).transpose(1, 2))
        h = h * torch.sigmoid(self.gate(h))
        b, n, _ = h.shape
        return self.fc_cut(h.view(b, n, 2, 4)).sum() + self.fc_slice(h[..., :4]).sum()


def test_moves_that_keep_cut_or_broadcast_the_channels():
    c = spatialize(Moves(), ["conv", "fc_t", "gate", "fc_cut", "fc_slice"], example=torch.randn(2, 3, 5))
    assert c.sheet("fc_t", "in") == c.sheet("conv", "out")
    h = c.sheet("fc_t", "out")
    assert c.sheet("gate", "in") == h and c.sheet("gate", "out") != h and not h.gated
    assert c.sheet("fc_cut", "in") != c.sheet("fc_slice", "in")
    assert {s.size for s in (c.sheet("fc_cut", "in"), c.sheet("fc_slice", "in"))} == {4}
    assert h.readers == ("gate",) and h.writers == ("fc_t",)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it; one forward can."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 6)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h.relu() if h.sum() > 0 else h.tanh()) + x


def test_an_untraceable_forward_warns_and_an_example_follows_it():
    with pytest.warns(UserWarning, match=r"cannot follow the data through 'Branchy' \(TraceError: .*\).*example="):
        c = spatialize(Branchy(), ["fc1", "fc2"], infer=True, sheets={"fc1": ("x", "h"), "fc2": ("h", None)})
    assert c.sheet("fc2", "out") != c.sheet("fc1", "in")  # the residual + x is not seen
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = spatialize(Branchy(), ["fc1", "fc2"], example=torch.randn(2, 6))
    assert c.sheet("fc2", "in") == c.sheet("fc1", "out") and c.sheet("fc2", "out") == c.sheet("fc1", "in")
    with pytest.warns(UserWarning, match=r"through 'Sequential' \(its forward on example= raised RuntimeError: .*\); a torch.fx trace"):
        spatialize(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), ["0", "2"], example=torch.randn(2, 5))


def test_summary_marks_a_sheet_nothing_reads_or_writes():
    text = spatialize(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), ["0", "2"]).summary()
    lines = {line.split(":")[0].strip(): line for line in text.splitlines() if line.startswith("  ")}
    assert "NOTHING WRITES IT" in lines["0.in"] and "NOTHING READS IT" not in lines["0.in"]
    assert "NOTHING READS IT" in lines["2"] and "NOTHING WRITES IT" not in lines["2"]
    assert "NOTHING" not in lines["0"]


def test_torch_transformer_encoder_through_an_example():
    """nn.TransformerEncoder (fx cannot trace its layers' checks; in inference its fused path skips
    the Linear modules): one forward with gradients on follows the stream from layer to layer."""
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2, enable_nested_tensor=False)
    c = spatialize(enc, ["layers.*.linear1", "layers.*.linear2"], example=torch.randn(2, 5, 16))
    stream = c.sheet("layers.0.linear2", "out")
    assert stream.writers == ("layers.0.linear2", "layers.1.linear2")
    assert stream.readers == ("layers.0.linear1", "layers.1.linear1")


def test_a_layer_called_twice_or_never_in_the_example_s_forward_is_an_error():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.out(self.fc(self.fc(x)))

    with pytest.raises(ValueError, match=r"'fc' is called more than once in the forward of 'Twice'"):
        spatialize(Twice(), ["fc", "out"], example=torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"'out' is never called in the traced forward"):
        spatialize(_Skips(), ["fc", "out"], example=torch.randn(2, 3))


class _Skips(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)  # out is never called


def test_separate_traces_keep_their_sheets_apart_and_say_so():
    """GPT-2's blocks without the model around them (no dummy_inputs): fx fails on each block
    (transformers 5 has no fx support), the MLPs are traced one by one, and nothing joins across
    them but a warning names the blocks and the reason."""
    blocks = _hf("gpt2").transformer.h
    with pytest.warns(UserWarning, match=r"through '0' \(ValueError: .*\); '1' .*joined only within "
                                         r"\['0.mlp', '1.mlp'\].*stays apart"):
        c = spatialize(blocks, ["*.mlp.c_fc", "*.mlp.c_proj"])
    assert c.sheet("0.mlp.c_fc", "in") != c.sheet("1.mlp.c_fc", "in")
    assert c.sheet("0.mlp.c_proj", "in") == c.sheet("0.mlp.c_fc", "out")
    assert len(c.sheets) == 6
