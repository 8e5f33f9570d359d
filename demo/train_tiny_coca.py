"""Train the demo's tiny CoCa on frames of a generated training world, with open_clip's own CoCa loss.

Run ``python -m t3al.demo.train_tiny_coca`` (about ten minutes on two CPU cores). Each step pairs
frames with text: an action frame gets its class prompt ("a video of action Ball Bounce") or its
caption, a background frame its caption ("an empty grass background", "a red ball resting on
sand"). The caption (decoder) loss is computed on the rows that carry a caption, the contrastive
loss on the whole batch. The checkpoint is an fp16 state_dict that
``open_clip.create_model_and_transforms(MODEL_NAME, pretrained=path)`` loads.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import open_clip
import torch
from tqdm import tqdm

from t3al.extract.ffmpeg_frames import FrameGeometry, probe, stream_frames
from t3al.extract.captions import clean_caption
from t3al.extract.models import class_prompt, register_model_configs

from .model import CHECKPOINT, MODEL_NAME
from .world import generate_world


@dataclass
class FrameSet:
    """Decoded, model-sized frames of a world with each frame's caption and action label (None: background)."""

    images: np.ndarray
    captions: list[str]
    labels: list[str | None]


def _label_at(annotations: list[dict], t: float) -> str | None:
    return next((a["label"] for a in annotations if a["start"] <= t < a["end"]), None)


def load_frames(world: Path, size: int, every: int) -> FrameSet:
    """Every ``every``-th frame of each video of a generated world, decoded as stage one decodes it."""
    manifest = json.loads((world / "manifest.json").read_text())
    captions = json.loads((world / "captions.json").read_text())
    images, texts, labels = [], [], []
    for video_id in tqdm(sorted(manifest["videos"]), desc=f"decode {world.name}", unit="video"):
        runs = {i: run["text"] for run in captions[video_id] for i in range(run["first"], run["last"] + 1)}
        annotations = [a for a in manifest["annotations"] if a["video"] == video_id]
        index = 0
        for frames, times in stream_frames(probe(world / "videos" / f"{video_id}.mp4"), FrameGeometry(size)):
            for frame, t in zip(frames, times):
                if index % every == 0:
                    images.append(frame)
                    texts.append(runs[index])
                    labels.append(_label_at(annotations, float(t)))
                index += 1
    return FrameSet(np.stack(images), texts, labels)


def to_tensor(images: np.ndarray, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 N x H x W x 3 frames as the model's normalised N x 3 x H x W input."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def batch_texts(frames: FrameSet, rows: np.ndarray, rng: np.random.Generator,
                prompt_share: float) -> tuple[np.ndarray, list[str], int]:
    """The rows reordered captions first, their texts, and how many carry a caption.

    An action row gets its class prompt instead of its caption with probability prompt_share.
    """
    use_prompt = np.array([frames.labels[i] is not None and rng.random() < prompt_share for i in rows])
    order = np.concatenate([rows[~use_prompt], rows[use_prompt]])
    texts = [frames.captions[i] for i in rows[~use_prompt]] + [class_prompt(frames.labels[i]) for i in rows[use_prompt]]
    return order, texts, int((~use_prompt).sum())


def coca_loss(model, loss_fn, tokenizer, images: torch.Tensor, texts: list[str], n_caption: int,
              caption_tokens: int) -> torch.Tensor:
    """CoCa loss: contrastive over all rows, captioning over the first n_caption rows.

    The decoder sees the captions cut to ``caption_tokens`` tokens; with causal towers this changes
    no logit of the kept positions, as long as every caption fits (checked).
    """
    tokens = tokenizer(texts)
    if n_caption and bool((tokens[:n_caption, caption_tokens:] != 0).any()):
        raise ValueError(f"a caption is longer than {caption_tokens} tokens: {texts[:n_caption]}")
    out = model(images[:n_caption], tokens[:n_caption, :caption_tokens])
    image_features = torch.cat([out["image_features"], model.encode_image(images[n_caption:], normalize=True)])
    text_features = model.encode_text(tokens, normalize=True)
    contrastive, caption = loss_fn(image_features, text_features, out["logits"], out["labels"], out["logit_scale"])
    return contrastive + caption


def _lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(model, tokenizer, frames: FrameSet, steps: int, batch_size: int, n_caption: int, lr: float,
          seed: int) -> list[float]:
    """AdamW with warmup and cosine decay; returns the loss of every step."""
    rng = np.random.default_rng(seed)
    mean, std = model.visual.image_mean, model.visual.image_std
    loss_fn = open_clip.loss.CoCaLoss(caption_loss_weight=1.0, clip_loss_weight=1.0, pad_id=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    losses = []
    model.train()
    for step in (bar := tqdm(range(steps), desc="train", unit="step")):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup=max(1, steps // 20))
        rows = rng.choice(len(frames.labels), batch_size, replace=False)
        order, texts, n_captioned = batch_texts(frames, rows, rng, prompt_share=0.5)
        images = to_tensor(frames.images[order], mean, std)
        loss = coca_loss(model, loss_fn, tokenizer, images, texts, min(n_caption, n_captioned), caption_tokens=16)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def encode_frames(model, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings of uint8 frames."""
    mean, std = model.visual.image_mean, model.visual.image_std
    with torch.no_grad():
        return torch.cat([model.encode_image(to_tensor(images[i:i + batch_size], mean, std), normalize=True)
                          for i in range(0, len(images), batch_size)])


def zero_shot_report(model, tokenizer, frames: FrameSet, classes: list[str], threshold: float = 0.8) -> dict:
    """Frame-level zero-shot figures: class-prompt accuracy on action frames, and how often the naive
    baseline's rule (max class probability > threshold) fires on action and on background frames."""
    with torch.no_grad():
        text = model.encode_text(tokenizer([class_prompt(c) for c in classes]), normalize=True)
        probs = (model.logit_scale.exp() * encode_frames(model, frames.images) @ text.T).softmax(-1).numpy()
    action = np.array([label is not None for label in frames.labels])
    truth = np.array([classes.index(label) if label is not None else -1 for label in frames.labels])
    hits = probs.argmax(1) == truth
    return {
        "frames": int(len(truth)), "action_frames": int(action.sum()),
        "accuracy_action_frames": float(hits[action].mean()),
        "chance": 1.0 / len(classes),
        "per_class_accuracy": {c: float(hits[truth == k].mean()) for k, c in enumerate(classes) if (truth == k).any()},
        "naive_rule_fires_on_action": float((probs[action].max(1) > threshold).mean()),
        "naive_rule_fires_on_background": float((probs[~action].max(1) > threshold).mean()),
    }


def greedy_captions(model, images: np.ndarray, max_tokens: int = 20) -> list[str]:
    """Captions by greedy decoding through the model's own forward pass (for the model card)."""
    mean, std = model.visual.image_mean, model.visual.image_std
    pixels = to_tensor(images, mean, std)
    with torch.no_grad():
        encoded = model(pixels)
        tokens = torch.full((len(images), 1), 49406, dtype=torch.long)
        for _ in range(max_tokens):
            logits = model(pixels, tokens, image_latent=encoded["image_features"], image_embs=encoded["image_embs"],
                           output_labels=False)["logits"][:, -1]
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], 1)
    return [clean_caption(open_clip.decode(row)) for row in tokens]


def save_fp16(model, path: Path) -> None:
    """Save the state_dict in half precision (open_clip casts it back when loading)."""
    torch.save({k: v.detach().half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)


def measure_checkpoint(path: Path, tokenizer, frames: FrameSet, heldout: FrameSet, classes: list[str]) -> dict:
    """Load the saved checkpoint through open_clip and measure it: size, zero-shot figures, captions."""
    loaded, _, _ = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=str(path))
    loaded.eval()
    seen = FrameSet(frames.images[::10], frames.captions[::10], frames.labels[::10])
    sample = np.linspace(0, len(heldout.labels) - 1, 8).astype(int)
    return {
        "parameters": sum(p.numel() for p in loaded.parameters()),
        "logit_scale": float(loaded.logit_scale.detach().exp()),
        "heldout": zero_shot_report(loaded, tokenizer, heldout, classes),
        "train": zero_shot_report(loaded, tokenizer, seen, classes),
        "caption_examples": [{"truth": heldout.captions[i], "generated": text}
                             for i, text in zip(sample, greedy_captions(loaded, heldout.images[sample]))],
    }


@click.command(help=__doc__)
@click.option("--work", type=click.Path(path_type=Path), default=Path("runs/tiny_coca"), show_default=True,
              help="Folder for the generated training and held-out worlds.")
@click.option("--out", type=click.Path(path_type=Path), default=CHECKPOINT, show_default=True,
              help="Where to write the fp16 checkpoint; its metrics go next to it as .metrics.json.")
@click.option("--train-seed", default=1, show_default=True, help="Seed of the training world.")
@click.option("--train-videos", default=120, show_default=True)
@click.option("--eval-seed", default=2, show_default=True, help="Seed of the held-out world (must differ).")
@click.option("--eval-videos", default=12, show_default=True)
@click.option("--every", default=6, show_default=True, help="Keep every n-th frame of the training world.")
@click.option("--steps", default=360, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--caption-rows", default=24, show_default=True, help="Rows of each batch that get the caption loss.")
@click.option("--lr", default=1.5e-3, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of initialisation and batch sampling.")
@click.option("--threads", default=1, show_default=True, help="Torch threads (1 holds up best on a shared 2-core machine).")
def main(work: Path, out: Path, train_seed: int, train_videos: int, eval_seed: int, eval_videos: int, every: int,
         steps: int, batch_size: int, caption_rows: int, lr: float, seed: int, threads: int) -> None:
    if train_seed == eval_seed:
        raise click.BadParameter("the held-out world needs another seed than the training world", param_hint="--eval-seed")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    register_model_configs()
    model, _, _ = open_clip.create_model_and_transforms(MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    started = time.time()
    train_dir, eval_dir = work / f"train_{train_seed}", work / f"heldout_{eval_seed}"
    generate_world(train_dir, train_seed, train_videos)
    generate_world(eval_dir, eval_seed, eval_videos)
    frames = load_frames(train_dir, size, every)
    prepared = time.time()
    losses = train(model, tokenizer, frames, steps, batch_size, caption_rows, lr, seed)
    trained = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_fp16(model, out)
    metrics = {
        "model": MODEL_NAME, "checkpoint_bytes": out.stat().st_size, "seed": seed,
        "train_world": {"seed": train_seed, "videos": train_videos, "frames_used": len(frames.labels), "every": every},
        "heldout_world": {"seed": eval_seed, "videos": eval_videos},
        "steps": steps, "batch_size": batch_size, "caption_rows": caption_rows, "lr": lr, "threads": threads,
        "seconds_data": round(prepared - started, 1), "seconds_training": round(trained - prepared, 1),
        "loss_first_10": float(np.mean(losses[:10])), "loss_last_10": float(np.mean(losses[-10:])),
        **measure_checkpoint(out, tokenizer, frames, load_frames(eval_dir, size, every=5),
                             json.loads((eval_dir / "manifest.json").read_text())["classes"]),
    }
    out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=1))
    click.echo(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
