"""What the generated world looks like: backgrounds, action classes and distractors, drawn with PIL."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

SIZE = 96
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    """A background: its caption word and a function making its texture from a random generator."""

    name: str
    texture: Callable[[np.random.Generator], np.ndarray]


def _grass(rng: np.random.Generator) -> np.ndarray:
    base = np.array([60, 130, 50], np.float32) + rng.normal(0, 18, (SIZE, SIZE, 1)) * [0.4, 1.0, 0.3]
    blades = rng.random((1, SIZE, 1)) * 25
    return base + blades * np.linspace(0.2, 1.0, SIZE)[:, None, None]


def _sand(rng: np.random.Generator) -> np.ndarray:
    rows = np.sin(np.arange(SIZE) / 3.0 + rng.random() * 6)[:, None, None] * 10
    return np.array([200, 175, 120], np.float32) + rows + rng.normal(0, 8, (SIZE, SIZE, 1))


def _sky(rng: np.random.Generator) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, SIZE)[:, None, None]
    top, bottom = np.array([70, 120, 210], np.float32), np.array([170, 200, 240], np.float32)
    return top + (bottom - top) * ramp + rng.normal(0, 3, (SIZE, SIZE, 1))


def _night(rng: np.random.Generator) -> np.ndarray:
    image = np.array([15, 20, 45], np.float32) + rng.normal(0, 4, (SIZE, SIZE, 1))
    stars = rng.random((SIZE, SIZE)) > 0.985
    image[stars] = 200
    return image


def _snow(rng: np.random.Generator) -> np.ndarray:
    return np.array([225, 228, 235], np.float32) + rng.normal(0, 9, (SIZE, SIZE, 1))


def _brick(rng: np.random.Generator) -> np.ndarray:
    image = np.array([150, 70, 50], np.float32) + rng.normal(0, 10, (SIZE, SIZE, 3))
    image[::12] = 190
    for row in range(0, SIZE, 12):
        offset = 0 if (row // 12) % 2 else 8
        image[row:row + 12, offset::16] = 190
    return image


SCENES = (Scene("grass", _grass), Scene("sand", _sand), Scene("sky", _sky), Scene("night", _night),
          Scene("snow", _snow), Scene("brick", _brick))


@dataclass(frozen=True)
class Pose:
    """Where an actor is: a reference point in pixels, a size and the instance's own phase."""

    x: float
    y: float
    size: float
    speed: float
    phase: float


def _star_points(cx: float, cy: float, radius: float, turn: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        angle = turn + k * math.pi / 5
        points.append((cx + r * math.sin(angle), cy - r * math.cos(angle)))
    return points


def _square_points(cx: float, cy: float, half: float, angle: float) -> list[tuple[float, float]]:
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + half * (u * c - v * s), cy + half * (u * s + v * c)) for u, v in corners]


def draw_ball(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A ball bouncing on the ground (resting on it when idle)."""
    r = pose.size * 0.5
    height = 0.0 if idle else abs(math.sin(math.pi * pose.speed * tau + pose.phase)) * 40
    cy = 80 - r - height
    draw.ellipse([pose.x - r, cy - r, pose.x + r, cy + r], fill=colour)


def draw_spin(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A square spinning about its centre (axis-aligned when idle)."""
    angle = 0.0 if idle else 2 * math.pi * pose.speed * 0.5 * tau + pose.phase
    draw.polygon(_square_points(pose.x, pose.y, pose.size * 0.6, angle), fill=colour)


def draw_slide(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A triangle sliding across the frame (waiting at its starting side when idle)."""
    x = 12 + (0.0 if idle else progress) * (SIZE - 24)
    s = pose.size * 0.7
    draw.polygon([(x - s, pose.y + s), (x + s, pose.y + s), (x, pose.y - s)], fill=colour)


def draw_pulse(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A ring growing and shrinking (small and still when idle)."""
    r = 8.0 if idle else 14 + 10 * math.sin(2 * math.pi * pose.speed * tau + pose.phase)
    draw.ellipse([pose.x - r, pose.y - r, pose.x + r, pose.y + r], outline=colour, width=4)


def draw_orbit(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A star circling around a point (sitting at the point when idle)."""
    angle = 2 * math.pi * pose.speed * 0.5 * tau + pose.phase
    reach = 0.0 if idle else 22.0
    cx, cy = 48 + reach * math.cos(angle), 48 + reach * math.sin(angle)
    draw.polygon(_star_points(cx, cy, pose.size * 0.7, angle), fill=colour)


def draw_swing(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A pendulum swinging from the top edge (hanging straight down when idle)."""
    angle = 0.0 if idle else 0.9 * math.sin(2 * math.pi * pose.speed * 0.6 * tau + pose.phase)
    bx, by = pose.x + 50 * math.sin(angle), 4 + 50 * math.cos(angle)
    draw.line([(pose.x, 4), (bx, by)], fill=colour, width=4)
    draw.ellipse([bx - 6, by - 6, bx + 6, by + 6], fill=colour)


def draw_burst(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """Dots flying outward from a point, over and over (a tight cluster when idle)."""
    reach = 3.0 if idle else 4 + 34 * ((pose.speed * tau + pose.phase) % 1.0)
    for k in range(8):
        angle = k * math.pi / 4
        x, y = pose.x + reach * math.cos(angle), pose.y + reach * math.sin(angle)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


def draw_wave(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """Bands rippling across the frame (flat lines when idle)."""
    amplitude = 0.0 if idle else 9.0
    shift = 2 * math.pi * pose.speed * tau
    for band in range(3):
        y0 = 24 + band * 24
        points = [(x, y0 + amplitude * math.sin(x / 8 + shift + band)) for x in range(0, SIZE + 4, 4)]
        draw.line(points, fill=colour, width=4)


def draw_flash(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A checkerboard patch inverting rapidly (one plain square when idle)."""
    cell, left, top = 9, pose.x - 18, pose.y - 18
    if idle:
        draw.rectangle([left, top, left + 4 * cell, top + 4 * cell], outline=colour, width=2)
        return
    flip = int(tau * 4 * pose.speed) % 2
    for i in range(4):
        for j in range(4):
            fill = colour if (i + j + flip) % 2 else (20, 20, 20)
            draw.rectangle([left + i * cell, top + j * cell, left + (i + 1) * cell, top + (j + 1) * cell], fill=fill)


def draw_zigzag(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A small square darting across the frame in a zigzag (crouching at the side when idle)."""
    x = 10 + (0.0 if idle else progress) * (SIZE - 20)
    wave = 0.0 if idle else 2 * abs(((pose.speed * 1.5 * tau + pose.phase) % 1.0) - 0.5) - 0.5
    y = pose.y + 50 * wave
    half = pose.size * 0.35
    draw.rectangle([x - half, y - half, x + half, y + half], fill=colour)


def draw_spiral(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """A spiral line drawing itself outward (a short stub when idle)."""
    turns = 0.3 if idle else 0.5 + 2.5 * progress
    steps = max(2, int(turns * 24))
    points = [(48 + 2.6 * a * math.cos(a + pose.phase), 48 + 2.6 * a * math.sin(a + pose.phase))
              for a in np.linspace(0.0, 2 * math.pi * turns, steps)]
    draw.line(points, fill=colour, width=3)


def draw_rain(draw: ImageDraw.ImageDraw, tau: float, progress: float, pose: Pose, colour: RGB, idle: bool) -> None:
    """Streaks falling from the top (a row of drops along the top edge when idle)."""
    for k in range(9):
        x = 6 + k * 10 + 3 * math.sin(k * 2.1 + pose.phase)
        fall = 0.0 if idle else ((pose.speed * 0.8 * tau + k * 0.37 + pose.phase) % 1.0) * (SIZE + 20)
        y = fall - 10
        draw.line([(x, y), (x, y + 12)], fill=colour, width=2)


@dataclass(frozen=True)
class ActionClass:
    """One action: its class name, what the captions call it, its colour and how it is drawn."""

    name: str
    noun: str
    verb: str
    colour_name: str
    colour: RGB
    draw: Callable[..., None]


ACTIONS = (
    ActionClass("BallBounce", "ball", "bouncing", "red", (220, 40, 40), draw_ball),
    ActionClass("SquareSpin", "square", "spinning", "blue", (40, 70, 220), draw_spin),
    ActionClass("TriangleSlide", "triangle", "sliding", "green", (30, 200, 60), draw_slide),
    ActionClass("RingPulse", "ring", "pulsing", "yellow", (240, 220, 40), draw_pulse),
    ActionClass("StarOrbit", "star", "orbiting", "magenta", (220, 50, 200), draw_orbit),
    ActionClass("PendulumSwing", "pendulum", "swinging", "orange", (245, 140, 30), draw_swing),
    ActionClass("DotsBurst", "dots", "bursting", "white", (245, 245, 245), draw_burst),
    ActionClass("WaveRipple", "waves", "rippling", "cyan", (40, 220, 230), draw_wave),
    ActionClass("CheckerFlash", "board", "flashing", "checkered", (240, 240, 240), draw_flash),
    ActionClass("ZigzagDash", "block", "zigzagging", "purple", (130, 50, 200), draw_zigzag),
    ActionClass("SpiralDraw", "spiral", "growing", "lime", (170, 240, 60), draw_spiral),
    ActionClass("RainFall", "drops", "falling", "grey", (150, 150, 160), draw_rain),
)


@dataclass(frozen=True)
class Distractor:
    """Something moving that is not an action: a kind, a colour, when it is on screen and its path."""

    kind: str
    colour_name: str
    colour: RGB
    start: float
    end: float
    x: float
    y: float
    vx: float
    vy: float


DISTRACTOR_KINDS = ("cloud", "leaf", "bird", "balloon")


def draw_distractor(draw: ImageDraw.ImageDraw, item: Distractor, t: float) -> None:
    """Draw a distractor at its position at time t (slow, straight drift)."""
    x, y = item.x + item.vx * (t - item.start), item.y + item.vy * (t - item.start)
    if item.kind == "cloud":
        draw.ellipse([x - 14, y - 6, x + 14, y + 6], fill=item.colour)
    elif item.kind == "leaf":
        draw.ellipse([x - 5, y - 3, x + 5, y + 3], fill=item.colour)
    elif item.kind == "bird":
        draw.line([(x - 7, y - 4), (x, y), (x + 7, y - 4)], fill=item.colour, width=2)
    else:
        draw.ellipse([x - 6, y - 8, x + 6, y + 6], fill=item.colour)
        draw.line([(x, y + 6), (x, y + 16)], fill=item.colour, width=1)


def compose(background: np.ndarray, brightness: float) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A drawable image of the background under the given global brightness."""
    image = Image.fromarray(np.clip(background * brightness, 0, 255).astype(np.uint8))
    return image, ImageDraw.Draw(image)
