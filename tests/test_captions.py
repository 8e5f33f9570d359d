"""The caption generator gives open_clip's ``CoCa.generate`` tokens, from the feature pass's image tokens."""
from __future__ import annotations

import itertools
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from extract_helpers import transformers_generation
from t3al.cache import CacheInfo, ModelIdentity
from t3al.demo.train_tiny_coca import CHECKPOINT, MODEL_NAME, to_tensor
from t3al.demo.world import iter_frames, plan_world
from t3al.extract.captions import EOT, SOT, CaptionError, CaptionGenerator, CaptionSettings, clean_caption, open_clip_tokens
from t3al.extract.models import random_model, register_model_configs
from t3al.extract.extractor import Settings
from t3al.extract.provenance import settings_mismatch


def world_images(model: torch.nn.Module, count: int) -> torch.Tensor:
    """Every 15th frame of a small demo world (three scenes, actions and empty background), as model input."""
    specs = plan_world(4242, 3, 3, (6.0, 6.0))
    frames = [frame for spec in specs for frame in itertools.islice(iter_frames(spec), 0, None, 15)]
    cfg = model.visual.preprocess_cfg
    x = to_tensor(np.stack(frames[::len(frames) // count][:count]), cfg["mean"], cfg["std"])
    return F.interpolate(x, size=model.visual.image_size, mode="bicubic", align_corners=False)


def ending_early(model: torch.nn.Module, offset: float) -> torch.nn.Module:
    """A random CoCa whose end-token logit is raised by ``offset`` (a final-norm bias along its column),
    so that captions end at different lengths; without it random weights never stop before ``seq_len``."""
    with torch.no_grad():
        column = model.text_decoder.text_projection[:, EOT]
        model.text_decoder.ln_final.bias += offset * column / column.dot(column)
    return model.eval()


def image_tokens(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model._encode_image(images)[1]


GOLDEN_FILE = Path(__file__).resolve().parent / "data" / "caption_tokens.json"
# (settings, every how many of the 8 demo images, torch seed): the cases tests/record_caption_tokens.py records
GOLDEN_CASES = [
    ({"decoding": "beam"}, 1, 0),
    ({"decoding": "greedy"}, 1, 0),
    ({"decoding": "beam", "num_beams": 4, "num_beam_groups": 1}, 2, 0),
    ({"decoding": "beam", "num_beams": 6, "num_beam_groups": 2, "min_seq_len": 2, "seq_len": 7}, 2, 0),
    ({"decoding": "top_k", "top_k": 5, "temperature": 2.0}, 2, 7),
    ({"decoding": "top_p", "top_p": 0.9}, 2, 7),
]


def demo_model_and_images() -> tuple:
    """The embedded demo CoCa and 8 images of a demo world, as model input."""
    register_model_configs()
    model = open_clip.create_model(MODEL_NAME, pretrained=str(CHECKPOINT)).eval()
    return model, world_images(model, 8)


@pytest.fixture(scope="module")
def demo():
    model, images = demo_model_and_images()
    return model, images, image_tokens(model, images)


def test_captions_equal_the_recorded_open_clip_tokens(demo):
    model, _, tokens = demo
    recorded = json.loads(GOLDEN_FILE.read_text())
    assert [(case["settings"], case["image_stride"], case["seed"]) for case in recorded["cases"]] == GOLDEN_CASES
    for case in recorded["cases"]:
        torch.manual_seed(case["seed"])
        settings = CaptionSettings(**case["settings"])
        got = CaptionGenerator(model, settings).tokens(tokens[::case["image_stride"]])
        assert got.tolist() == case["tokens"], case["settings"]


def random_demo(offset: float) -> tuple:
    register_model_configs()
    torch.manual_seed(0)
    model = ending_early(random_model(MODEL_NAME), offset)
    images = torch.randn(8, 3, 64, 64)
    return model, images, image_tokens(model, images)


def test_clean_caption_strips_special_tokens():
    assert clean_caption("<start_of_text>a man throws a ball <end_of_text>!!!") == "a man throws a ball"


@pytest.mark.parametrize("decoding", ["beam", "greedy"])
def test_demo_coca_captions_equal_open_clip_generate_token_for_token(demo, decoding):
    transformers_generation()
    model, images, tokens = demo
    settings = CaptionSettings(decoding=decoding)
    expected = open_clip_tokens(model, images, settings)
    assert torch.equal(CaptionGenerator(model, settings).tokens(tokens), expected)
    texts = CaptionGenerator(model, settings).texts(tokens)
    assert {"an empty night background", "an empty snow background", "an empty sky background"} <= set(texts)


@pytest.mark.parametrize("decoding, offset", [("beam", 7.0), ("greedy", 5.0)])
def test_captions_ending_at_different_lengths_equal_open_clip_alone_and_in_a_batch(decoding, offset):
    transformers_generation()
    model, images, tokens = random_demo(offset)
    settings = CaptionSettings(decoding=decoding, seq_len=12)
    expected = open_clip_tokens(model, images, settings)
    generator = CaptionGenerator(model, settings)
    assert torch.equal(generator.tokens(tokens), expected)
    lengths = (expected != model.pad_id).sum(dim=1)
    assert len(set(lengths.tolist())) > 2, "the images' captions should end at different lengths"
    for i in (int(lengths.argmin()), int(lengths.argmax())):  # batch size 1: the row cut at its own length
        alone = generator.tokens(tokens[i:i + 1])[0]
        assert len(alone) == lengths[i] and torch.equal(alone, expected[i, :len(alone)])


@pytest.mark.parametrize("options", [
    {"decoding": "beam", "num_beams": 4, "num_beam_groups": 1},
    {"decoding": "beam", "num_beams": 6, "num_beam_groups": 2, "min_seq_len": 2, "seq_len": 7},
    {"decoding": "top_k", "top_k": 5, "temperature": 2.0},
    {"decoding": "top_p", "top_p": 0.9},
])
def test_other_open_clip_settings_give_its_tokens_too(demo, options):
    transformers_generation()
    model, images, tokens = demo
    settings = CaptionSettings(**options)
    torch.manual_seed(7)
    expected = open_clip_tokens(model, images[::2], settings)
    torch.manual_seed(7)  # the sampling paths draw the same numbers in the same order
    assert torch.equal(CaptionGenerator(model, settings).tokens(tokens[::2]), expected)


def test_settings_name_the_open_clip_generate_call_they_equal():
    assert CaptionSettings().generate_kwargs() == {
        "seq_len": 30, "generation_type": "beam_search", "min_seq_len": 5, "repetition_penalty": 1.0,
        "num_beams": 6, "num_beam_groups": 3}
    greedy = CaptionSettings(decoding="greedy", seq_len=20).describe()
    assert greedy["generation_type"] == "top_k" and greedy["top_k"] == 1 and greedy["seq_len"] == 20


def test_unusable_settings_are_one_clear_error(demo):
    with pytest.raises(CaptionError, match="decoding must be one of"):
        CaptionSettings(decoding="nucleus")
    with pytest.raises(CaptionError, match="larger than the minimum"):
        CaptionSettings(seq_len=5)
    for beams, groups in ((6, 4), (1, 1), (6, 0)):
        with pytest.raises(CaptionError, match="equal groups"):
            CaptionSettings(num_beams=beams, num_beam_groups=groups)
    for bad in ({"top_k": 0}, {"top_p": 1.5}, {"temperature": 0.0}, {"repetition_penalty": -1.0}):
        with pytest.raises(CaptionError, match="caption sampling needs"):
            CaptionSettings(decoding="top_k", **bad)
    with pytest.raises(CaptionError, match="exceeds the model's text context of 32"):
        CaptionGenerator(demo[0], CaptionSettings(seq_len=40))


@pytest.fixture(scope="module")
def real_size():
    """coca_ViT-L-14 with random weights; its vision tower reads 56-pixel images (16 patches instead of
    256) to keep open_clip's six encodings per image cheap; the text towers and the 255 image tokens
    the decoder attends to are those of the real size."""
    torch.manual_seed(0)
    model = random_model("coca_ViT-L-14", force_image_size=56).eval()
    images = torch.randn(2, 3, 56, 56)
    return model, images, image_tokens(model, images)


@pytest.mark.slow
@pytest.mark.parametrize("decoding, count", [("beam", 1), ("greedy", 2)])
def test_real_size_coca_captions_equal_open_clip_generate(real_size, decoding, count):
    transformers_generation()
    model, images, tokens = real_size
    settings = CaptionSettings(decoding=decoding, seq_len=6, min_seq_len=2)
    expected = open_clip_tokens(model, images[:count], settings)
    generator = CaptionGenerator(model, settings)
    assert torch.equal(generator.tokens(tokens[:count]), expected)
    alone = generator.tokens(tokens[count - 1:count])[0]
    assert torch.equal(alone, expected[count - 1, :len(alone)])


def test_a_cache_refuses_captions_decoded_another_way():
    def info(captions_fps: float = 10.0, **settings) -> CacheInfo:
        return CacheInfo(model=ModelIdentity("coca", "tag"),
                         captions={"fps": captions_fps, **Settings(**settings).captioning().describe()})

    assert settings_mismatch(info(), info()) is None
    assert "captions decoding = 'beam', this run asks for 'greedy'" in settings_mismatch(
        info(), info(caption_decoding="greedy"))
    assert "seq_len" in settings_mismatch(info(), info(caption_length=20))
    assert settings_mismatch(info(0.0), info(0.0, caption_length=20)) is None  # no captions, nothing to mix
    before = CacheInfo(model=ModelIdentity("coca", "tag"),
                       captions={"fps": 10.0, "generation": "open_clip CoCa beam search", "seq_len": 30})
    assert "captions decoding = None, this run asks for 'beam'" in settings_mismatch(before, info())


SYNCS = {"item", "tolist", "cpu", "numpy", "nonzero", "masked_select", "__bool__", "__int__", "__float__", "__index__"}


class HostSyncs(TorchFunctionMode):
    """Counts the calls that read a tensor back to the host (a sync on a GPU): values, transfers, nonzero
    and boolean-mask indexing."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        masked = name in ("__getitem__", "__setitem__") and _has_bool_index(args[1])
        moved = name == "to" and any(isinstance(a, (str, torch.device)) for a in (*args[1:], *(kwargs or {}).values()))
        self.count += name in SYNCS or masked or moved
        return func(*args, **(kwargs or {}))


def _has_bool_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


@pytest.mark.parametrize("decoding", ["beam", "top_p"])
def test_a_caption_step_reads_the_device_at_most_once(demo, monkeypatch, decoding):
    model, _, tokens = demo
    generator = CaptionGenerator(model, CaptionSettings(decoding=decoding))
    steps = []
    step = generator.decoder.step
    monkeypatch.setattr(generator.decoder, "step", lambda *args: steps.append(1) or step(*args))
    with HostSyncs() as syncs:
        generator.tokens(tokens)
    assert len(steps) >= 5
    assert syncs.count <= len(steps) + 1  # one per step (all done? / which rows are active?), one to finish


def test_host_sync_counter_sees_the_reads_it_budgets():
    x = torch.tensor([1.0, 2.0])
    with HostSyncs() as syncs:
        bool(x[0] > 0), x[0].item(), x[x > 1], x.nonzero(), x.to("cpu"), x + 1
    assert syncs.count == 5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tokens_caption_without_the_callers_autocast(demo, dtype):
    model, _, tokens = demo
    generator = CaptionGenerator(model, CaptionSettings(decoding="greedy"))
    half = tokens.to(dtype)
    with pytest.raises(RuntimeError):  # what the generator's own autocast spares the caller
        F.linear(half, model.text_decoder.cross_attn[0].attn.in_proj_weight)
    alone = generator.tokens(half)
    assert not torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", dtype=dtype):
        inside = generator.tokens(half)
    # half-precision CPU kernels may round differently from call to call: most captions, not every token
    expected = generator.texts(tokens)
    for rows in (alone, inside):
        assert bool((rows[:, 0] == SOT).all()) and bool((rows == EOT).any(dim=1).all())
        texts = [clean_caption(open_clip.decode(row)) for row in rows]
        assert sum(a == b for a, b in zip(texts, expected)) >= 6


def test_a_coca_without_an_attribute_the_generator_reads_names_the_open_clip_version(demo, monkeypatch):
    model = demo[0]
    monkeypatch.delattr(model.text_decoder.cross_attn[0], "ln_1_kv")
    with pytest.raises(CaptionError, match=rf"decoder cross-attention 0 .* no ln_1_kv in open_clip {version('open_clip_torch')}"):
        CaptionGenerator(model)
