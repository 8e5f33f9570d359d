"""Model loading and what is cached: pre-projection features that reproduce open_clip's embeddings."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import open_clip
import pytest
import torch

from extract_helpers import write_tiny_models
from t3al.extract.models import (
    CONFIG_DIR,
    ModelLoadError,
    class_prompt,
    encode_texts,
    file_sha256,
    hub_answers,
    load_model,
    model_head,
    register_model_configs,
    encode_frames,
)

COCA, CLIP = "t3al_test_tiny_coca", "t3al_test_tiny_clip"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module", params=[COCA, CLIP])
def loaded(request, checkpoints):
    return load_model(request.param, str(checkpoints[request.param]), device="cpu")


def test_checkpoint_file_is_loaded_and_named_by_its_hash(loaded, checkpoints):
    path = checkpoints[loaded.identity.name]
    assert loaded.identity.checkpoint_sha256 == file_sha256(path)
    assert loaded.identity.pretrained == ""
    reference = torch.load(path, weights_only=True)
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, reference[key])


def test_stored_visual_features_times_projection_give_encode_image(loaded):
    images = torch.randn(3, 3, loaded.image_size, loaded.image_size)
    stored, _ = encode_frames(loaded, images)
    assert stored.shape[1] == loaded.model.visual.proj.shape[0]
    with torch.no_grad():
        expected = loaded.model.encode_image(images, normalize=False)
    torch.testing.assert_close(stored @ loaded.model.visual.proj, expected, rtol=1e-5, atol=1e-5)


def test_stored_text_features_times_projection_give_encode_text(loaded):
    texts = ["a video of action Baseball Pitch", "a person dives off a cliff"]
    stored = torch.from_numpy(encode_texts(loaded, texts))
    head = model_head(loaded, [])
    with torch.no_grad():
        expected = loaded.model.encode_text(loaded.tokenizer(texts), normalize=False)
    torch.testing.assert_close(stored @ torch.from_numpy(head.text_projection), expected, rtol=1e-5, atol=1e-5)


def test_projections_are_restored_after_encoding(loaded):
    encode_frames(loaded, torch.zeros(1, 3, loaded.image_size, loaded.image_size))
    assert isinstance(loaded.model.visual.proj, torch.nn.Parameter)
    assert any(name.endswith("text_projection") for name, _ in loaded.model.named_parameters())


def test_head_holds_projections_log_scale_and_prompt_features(loaded):
    head = model_head(loaded, ["BaseballPitch", "Playing guitarra"])
    assert head.prompts == ["a video of action Baseball Pitch", "a video of action Playing guitarra"]
    assert head.logit_scale == pytest.approx(loaded.model.logit_scale.item())
    np.testing.assert_allclose(head.prompt_features, encode_texts(loaded, head.prompts), rtol=1e-6)
    np.testing.assert_array_equal(head.visual_proj, loaded.model.visual.proj.detach().numpy())


def test_class_prompt_splits_camel_case_and_keeps_spaced_names():
    assert class_prompt("BaseballPitch") == "a video of action Baseball Pitch"
    assert class_prompt("CleanAndJerk") == "a video of action Clean And Jerk"
    assert class_prompt("Playing bagpipes") == "a video of action Playing bagpipes"
    assert class_prompt("Diving") == "a video of action Diving"


def test_one_vision_pass_gives_the_features_and_the_image_tokens_coca_captions_read(loaded):
    images = torch.randn(2, 3, loaded.image_size, loaded.image_size)
    features, tokens = encode_frames(loaded, images)
    with torch.no_grad():
        pooled = loaded.model.encode_image(images, normalize=False)
    torch.testing.assert_close(features @ loaded.model.visual.proj, pooled, rtol=1e-5, atol=1e-5)
    if loaded.can_caption:
        with torch.no_grad():
            _, expected = loaded.model._encode_image(images)
        torch.testing.assert_close(tokens, expected)
    else:
        assert tokens is None


def test_clip_models_cannot_caption(checkpoints):
    assert not load_model(CLIP, str(checkpoints[CLIP]), device="cpu").can_caption
    assert load_model(COCA, str(checkpoints[COCA]), device="cpu").can_caption


def test_every_shipped_model_config_is_registered():
    register_model_configs()
    shipped = [p.stem for p in CONFIG_DIR.glob("*.json")
               if {"embed_dim", "vision_cfg", "text_cfg"} <= set(json.loads(p.read_text()))]
    assert set(shipped) <= set(open_clip.list_models())


def test_extra_model_config_file_is_registered(tmp_path):
    path = tmp_path / "t3al_test_extra.json"
    path.write_text(json.dumps({"embed_dim": 8, "vision_cfg": {"image_size": 16, "layers": 1, "width": 16,
                                "head_width": 8, "patch_size": 8},
                                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8,
                                             "heads": 1, "layers": 1}}))
    register_model_configs(path)
    assert "t3al_test_extra" in open_clip.list_models()


def test_unknown_model_names_the_way_to_add_a_config():
    with pytest.raises(ModelLoadError, match="--model-config"):
        load_model("no_such_model", "x", device="cpu")


def test_unknown_pretrained_lists_known_tags():
    with pytest.raises(ModelLoadError, match="mscoco_finetuned_laion2b_s13b_b90k"):
        load_model("coca_ViT-L-14", "no_such_tag", device="cpu")


def test_missing_weights_offline_say_how_to_provide_them(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        load_model("coca_ViT-B-32", "mscoco_finetuned_laion2b_s13b_b90k", device="cpu")
    message = str(error.value)
    assert "--pretrained /path/to/" in message and "hub cache" in message


def test_corrupt_checkpoint_is_one_clear_error(tmp_path, checkpoints):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot load checkpoint .*bad.pt"):
        load_model(COCA, str(bad), device="cpu")


def test_an_unanswering_hub_is_asked_once_then_the_weights_fail_without_retries(monkeypatch, caplog):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    asked = []

    def no_network(request, timeout):
        asked.append(request.full_url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(ModelLoadError, match="may be offline"):
        load_model("coca_ViT-B-32", "mscoco_finetuned_laion2b_s13b_b90k", device="cpu")
    assert asked == [constants.ENDPOINT]
    assert "Retrying" not in caplog.text and constants.HF_HUB_OFFLINE is False


def test_hf_hub_offline_set_after_start_is_honoured_without_asking_the_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the hub library read the variable at import
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *args, **kwargs: pytest.fail("asked the hub"))
    with pytest.raises(ModelLoadError, match="--pretrained /path/to/"):
        load_model("coca_ViT-B-32", "mscoco_finetuned_laion2b_s13b_b90k", device="cpu")


def test_the_hub_answers_with_any_http_status(monkeypatch):
    def refused(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 401, "Unauthorized", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", refused)
    assert hub_answers("https://hub.example")
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: (_ for _ in ()).throw(TimeoutError()))
    assert not hub_answers("https://hub.example")
