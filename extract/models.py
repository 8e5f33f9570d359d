"""open_clip models for stage one: loading, pre-projection features, captions and class prompts.

The cache keeps features BEFORE the projections (the vision tower's pooled output before
``visual.proj``, the text tower's pooled output before ``text_projection``) together with the
projections themselves, because stage two adapts exactly those projections.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import open_clip
import torch
from torch import nn

from t3al.cache import Head, ModelIdentity, T3alError

from .defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, PROMPT_TEMPLATE

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class ModelLoadError(T3alError):
    """A model that cannot be built or whose weights cannot be found; the message says what to do."""


def register_model_configs(*paths: str | os.PathLike) -> None:
    """Make every model JSON in ``extract/model_configs/`` (and in ``paths``) known to open_clip."""
    for path in (CONFIG_DIR, *paths):
        path = Path(path)
        if not path.exists():
            raise ModelLoadError(f"{path}: no such model config file or folder")
        open_clip.add_model_config(path)


def file_sha256(path: str | os.PathLike) -> str:
    """Hash of a checkpoint file, read in chunks; it names the weights in the cache identity."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def class_prompt(name: str, template: str = PROMPT_TEMPLATE) -> str:
    """``"a video of action Baseball Pitch"`` for ``BaseballPitch``; names with spaces are kept."""
    words = name if " " in name else _CAMEL.sub(" ", name)
    return template.format(words)


@dataclass
class LoadedModel:
    """An open_clip model in eval mode with what stage one needs around it."""

    model: nn.Module
    tokenizer: object
    identity: ModelIdentity
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    device: torch.device
    precision: str

    @property
    def can_caption(self) -> bool:
        return hasattr(self.model, "generate") and hasattr(self.model, "text_decoder")

    @property
    def applied_precision(self) -> str:
        """The precision the numbers are computed in: fp16/bf16 autocast runs on CUDA only, fp32 elsewhere."""
        return self.precision if self.device.type == "cuda" else "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        """fp16/bf16 autocast on CUDA, plain fp32 elsewhere."""
        if self.device.type == "cuda" and self.precision in ("fp16", "bf16"):
            dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()


def select_device(device: str) -> torch.device:
    """The device a model runs on: ``auto`` picks CUDA when available, else CPU; a CUDA device gets
    its index (``cuda`` is the current one) and becomes the current device, so that what torch puts
    on the current device (pinned host memory, streams) lands on it and not on ``cuda:0``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        selected = torch.device(device)
    except RuntimeError as err:
        raise ModelLoadError(f"--device {device}: {err}") from None
    if selected.type != "cuda":
        return selected
    if not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: torch finds no CUDA device (torch.cuda.is_available() is False)")
    index = torch.cuda.current_device() if selected.index is None else selected.index
    if index >= torch.cuda.device_count():
        raise ModelLoadError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    selected = torch.device("cuda", index)
    torch.cuda.set_device(selected)
    return selected


def load_model(name: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED, device: str = "auto",
               precision: str = "auto") -> LoadedModel:
    """Build ``name`` with weights from a pretrained tag or a local checkpoint file."""
    register_model_configs()
    if name not in open_clip.list_models():
        raise ModelLoadError(
            f"unknown model {name!r}: not an open_clip config nor a JSON in {CONFIG_DIR} "
            "(add one with --model-config FILE)"
        )
    torch_device = select_device(device)
    if precision == "auto":
        precision = "fp16" if torch_device.type == "cuda" else "fp32"
    is_file = os.path.isfile(pretrained)
    if not is_file and not open_clip.get_pretrained_cfg(name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ModelLoadError(
            f"--pretrained {pretrained!r} is neither a checkpoint file nor a tag of {name} "
            f"(known tags: {', '.join(tags) or 'none'})"
        )
    try:
        with contextlib.nullcontext() if is_file else _offline_unless_hub_answers():
            model = open_clip.create_model(name, pretrained=pretrained, device=torch_device,
                                           require_pretrained=True)
    except Exception as err:  # any failure to build or load becomes one message naming the weights
        raise ModelLoadError(_weights_help(name, pretrained, is_file, err)) from None
    identity = ModelIdentity(
        name=name,
        pretrained="" if is_file else pretrained,
        checkpoint_sha256=file_sha256(pretrained) if is_file else "",
    )
    return wrap_model(model, name, identity, torch_device, precision)


def random_model(name: str, **kwargs) -> nn.Module:
    """A randomly initialised open_clip model, for tests and benchmarks without weights.

    open_clip allocates the CoCa decoder's output projection with ``torch.empty`` and never
    initialises it, so it can hold NaN; it is drawn here like the decoder's other weights.
    ``kwargs`` go to ``open_clip.create_model`` (e.g. ``force_image_size``).
    """
    model = open_clip.create_model(name, **kwargs)
    decoder = getattr(model, "text_decoder", None)
    if decoder is not None:
        nn.init.normal_(decoder.text_projection, std=decoder.width ** -0.5)
    return model


def wrap_model(model: nn.Module, name: str, identity: ModelIdentity, device: torch.device,
               precision: str) -> LoadedModel:
    """A LoadedModel around an open_clip model, with its tokenizer and preprocessing settings."""
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return LoadedModel(
        model=model.eval(),
        tokenizer=open_clip.get_tokenizer(name),
        identity=identity,
        image_size=int(size),
        mean=tuple(float(v) for v in cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(float(v) for v in cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        device=device,
        precision=precision,
    )


def _offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def hub_answers(endpoint: str, timeout: float = 10.0) -> bool:
    """One request to the Hugging Face hub, without retries: does it answer at all (any HTTP status)?"""
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except OSError:  # no DNS, no route, refused, timed out
        return False
    return True


@contextlib.contextmanager
def _offline_unless_hub_answers() -> Iterator[None]:
    """open_clip's download in the hub's offline mode when HF_HUB_OFFLINE is set or the hub does not answer
    one request: cached weights still load, missing ones fail at once (the hub library would otherwise
    retry each file for about a minute, logging every retry)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or _offline_requested() or not hub_answers(constants.ENDPOINT)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _weights_help(name: str, pretrained: str, is_file: bool, err: Exception) -> str:
    """One message that says why the weights did not load and how to provide them."""
    reason = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}" if str(err) else type(err).__name__
    if is_file:
        return f"cannot load checkpoint {pretrained} into {name}: {reason}"
    return (
        f"cannot get the weights of {name} / {pretrained} ({reason}). This machine may be offline: "
        f"pass a local checkpoint with --pretrained /path/to/open_clip_model.safetensors (or .bin/.pt), "
        f"or pre-fill the Hugging Face hub cache (HF_HOME) by running "
        f"`python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{pretrained}')\"` "
        f"once on a machine with internet access and copying that cache here"
    )


@contextlib.contextmanager
def _without(module: nn.Module, attribute: str) -> Iterator[nn.Parameter]:
    """Temporarily set a projection parameter to None so the tower returns its pooled output."""
    param = getattr(module, attribute, None)
    if not isinstance(param, nn.Parameter):
        raise ModelLoadError(
            f"{type(module).__name__}.{attribute} is not a projection matrix; only open_clip towers "
            "with a linear projection parameter can be cached before projection"
        )
    setattr(module, attribute, None)
    try:
        yield param
    finally:
        setattr(module, attribute, param)


def _first(output: torch.Tensor | tuple) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _text_owner(model: nn.Module) -> nn.Module:
    """The module holding ``text_projection``: ``model.text`` (CoCa, custom text) or the CLIP itself."""
    return model.text if hasattr(model, "text") else model


def encode_frames(loaded: LoadedModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The vision tower's pooled output before ``visual.proj`` (B x Dv, float32 on the CPU) and, for a
    CoCa, the image tokens its caption decoder reads (on the device).

    One vision pass serves both, so a caption frame is never encoded again for its caption.
    """
    with torch.no_grad(), loaded.autocast(), _without(loaded.model.visual, "proj"):
        out = loaded.model.visual(images.to(loaded.device))
    pooled, tokens = out if isinstance(out, tuple) else (out, None)
    return pooled.float().cpu(), tokens


def encode_texts(loaded: LoadedModel, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """Text tower pooled output before ``text_projection`` (len(texts) x Dt), float32."""
    model = loaded.model
    owner = _text_owner(model)
    width = owner.text_projection.shape[0]
    rows = []
    for start in range(0, len(texts), batch_size):
        tokens = loaded.tokenizer(texts[start: start + batch_size]).to(loaded.device)
        with torch.no_grad(), loaded.autocast(), _without(owner, "text_projection"):
            out = model.text(tokens) if owner is not model else model.encode_text(tokens)
        rows.append(_first(out).float().cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, width), np.float32)


def prompt_tokens(loaded: LoadedModel, prompts: list[str]) -> list[int]:
    """How many tokens the model's tokenizer makes of each prompt, start and end tokens included
    (the text tower reads ``loaded.tokenizer.context_length`` of them and cuts the rest)."""
    if not prompts:
        return []
    width = 4 * max(len(p) for p in prompts) + 2  # a character is at most 4 UTF-8 bytes, one token each
    padding = int(loaded.tokenizer([""], context_length=width)[0, -1])
    return (loaded.tokenizer(prompts, context_length=width) != padding).sum(dim=1).tolist()


def model_head(loaded: LoadedModel, class_names: list[str], template: str = PROMPT_TEMPLATE) -> Head:
    """Projections, log logit scale and the pre-projection features of each class prompt."""
    prompts = [class_prompt(name, template) for name in class_names]
    owner = _text_owner(loaded.model)
    return Head(
        visual_proj=loaded.model.visual.proj.detach().float().cpu().numpy(),
        text_projection=owner.text_projection.detach().float().cpu().numpy(),
        logit_scale=float(loaded.model.logit_scale.detach().float().cpu().reshape(-1)[0]),
        class_names=list(class_names),
        prompts=prompts,
        prompt_features=encode_texts(loaded, prompts),
    )
