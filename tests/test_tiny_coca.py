"""The embedded tiny CoCa: loads through open_clip's own path, is small, and sees the world's classes."""
from __future__ import annotations

import open_clip
import pytest
import torch

from t3al.demo.scenes import ACTIONS
from t3al.demo.train_tiny_coca import CHECKPOINT, MODEL_NAME, coca_loss, load_frames, zero_shot_report
from t3al.demo.world import generate_world
from t3al.extract.models import register_model_configs


@pytest.fixture(scope="module")
def model():
    register_model_configs()
    loaded, _, _ = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=str(CHECKPOINT))
    return loaded.eval(), open_clip.get_tokenizer(MODEL_NAME)


def test_checkpoint_is_under_20_mb():
    assert CHECKPOINT.stat().st_size < 20 * 2**20


def test_checkpoint_beats_chance_on_a_held_out_video(tmp_path, model):
    generate_world(tmp_path, seed=4242, n_videos=3, n_classes=3, durations=(8.0, 10.0))
    frames = load_frames(tmp_path, 64, every=4)
    report = zero_shot_report(*model, frames, [a.name for a in ACTIONS])
    assert report["accuracy_action_frames"] > 3 * report["chance"]


def test_cut_captions_give_the_decoder_the_same_loss(model):
    net, tokenizer = model
    images = torch.randn(3, 3, 64, 64)
    texts = ["a red ball bouncing on grass", "an empty sky background", "a video of action Ball Bounce"]
    loss_fn = open_clip.loss.CoCaLoss(caption_loss_weight=1.0, clip_loss_weight=1.0)
    with torch.no_grad():
        cut = coca_loss(net, loss_fn, tokenizer, images, texts, n_caption=2, caption_tokens=16)
        full = coca_loss(net, loss_fn, tokenizer, images, texts, n_caption=2, caption_tokens=32)
    assert torch.allclose(cut, full, atol=1e-5)


def test_a_caption_too_long_for_the_cut_is_an_error(model):
    net, tokenizer = model
    loss_fn = open_clip.loss.CoCaLoss(caption_loss_weight=1.0, clip_loss_weight=1.0)
    with pytest.raises(ValueError, match="longer than 4 tokens"):
        coca_loss(net, loss_fn, tokenizer, torch.randn(1, 3, 64, 64), ["a red ball bouncing on grass"], 1, 4)
