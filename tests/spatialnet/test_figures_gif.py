"""The positions GIF: one frame per epoch up to GIF_FRAMES, beyond that as many, evenly spread."""
import pytest
import torch

from spatialnet.analysis.figures import GIF_FRAMES, animate_positions
from spatialnet.config import TrainConfig
from spatialnet.model import build_model


@pytest.mark.parametrize("epochs", [3, 2 * GIF_FRAMES + 7])
def test_gif_frames(tmp_path, epochs):
    from PIL import Image
    cfg = TrainConfig(hidden=[6, 6, 6, 8], data="subset").validate()
    model = build_model(cfg)
    layers = [l for l in cfg.split_layers if hasattr(model.layer(l), "positions")]
    track = {"epochs": list(range(epochs + 1)),
             "layers": {str(l): torch.randn(epochs + 1, cfg.sizes[l], 2, generator=torch.Generator().manual_seed(l))
                        for l in layers}}
    gif = animate_positions(model, cfg, track, tmp_path / "p.gif")
    with Image.open(gif) as im:
        assert im.n_frames == min(epochs + 1, GIF_FRAMES)
