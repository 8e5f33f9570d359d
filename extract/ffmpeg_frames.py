"""Video decoding with ffmpeg: probe, then stream fixed-size batches of preprocessed RGB frames.

ffmpeg decodes, optionally resamples the frame rate, resizes and crops to the model's input size
and writes raw 8-bit planar frames to a pipe; Python reads ``batch_size`` frames at a time, so
memory is bounded by one batch whatever the video's length. Each frame's presentation time comes
from ffmpeg's ``showinfo`` filter on stderr, read by a thread while stdout is being consumed.

Resizing in ffmpeg (bicubic, Catmull-Rom weights as PIL's) is what makes decoding fast;
``tests/test_ffmpeg_frames.py`` measures its distance to open_clip's PIL transform.
"""
from __future__ import annotations

import functools
import math
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import ffmpeg
import numpy as np

from t3al.cache import T3alError

PREPROCESS_MODES = ("model", "t3al-public")
_NTSC_RATES = {23.98: 24000 / 1001, 29.97: 30000 / 1001, 47.95: 48000 / 1001,
               59.94: 60000 / 1001, 119.88: 120000 / 1001}
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_SIZE = re.compile(r"[ ,](\d{2,5})x(\d{2,5})[ ,\[]")
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)")
_PTS_TIME = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:(\S+)")
_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*")
_LEVEL = re.compile(r"\[(panic|fatal|error|warning|info|verbose|debug|trace)\] ")
_SOURCES = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")
MAX_WARNINGS = 5  # distinct messages kept per video from each source (demuxer, decoder)
_DEMUXER = re.compile(r"^\[(in#\d+/|[^\]@]*,|(avi|asf|flv|ivf|mpeg|mpegps|mpegts|mxf|nut|ogg) @)")
MISSING_FRAMES_S = 1.0  # decoded frames may fall this far (or 2% of the duration) short of the container's
_COLOUR = re.compile(r",\s*\w+\(([^)]*)\)")
_PIX_FMT = re.compile(r"^[^,]*,\s*(\w+)")
_MATRICES = ("bt709", "bt470bg", "smpte170m", "bt2020nc", "bt2020c", "fcc", "smpte240m", "ycgco")
_SCALE_FLAGS = "bicubic+accurate_rnd+full_chroma_int+full_chroma_inp"


class DecodeError(T3alError):
    """A file ffmpeg cannot read as a video; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What ``ffmpeg -i`` tells about a file's first video stream."""

    path: Path
    width: int
    height: int
    fps: float
    duration: float
    colour: str = ""  # what ffmpeg prints after the pixel format, e.g. "tv, bt709, progressive"
    pix_fmt: str = ""  # the decoder's pixel format, e.g. "yuv420p"


@dataclass(frozen=True)
class FrameGeometry:
    """How decoded frames are turned into model input: size, resize policy and channel order.

    ``mode="model"`` is open_clip's inference transform (shortest side to ``size`` with bicubic,
    centre crop); ``mode="t3al-public"`` squashes to ``size`` x ``size`` and returns BGR frames,
    as the public T3AL extraction fed OpenCV's BGR images to a transform expecting RGB.
    """

    size: int
    mode: str = "model"

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESS_MODES:
            raise ValueError(f"preprocess mode must be one of {PREPROCESS_MODES}, got {self.mode!r}")

    @property
    def channels(self) -> str:
        """Channel order of the frames: what the model expects, or OpenCV's for ``t3al-public``."""
        return "BGR" if self.mode == "t3al-public" else "RGB"

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """Size after the resize step, rounded as torchvision's ``Resize(int)`` rounds it."""
        if self.mode == "t3al-public":
            return self.size, self.size
        if width <= height:
            return self.size, int(self.size * height / width)
        return int(self.size * width / height), self.size

    def crop_offset(self, width: int, height: int) -> tuple[int, int]:
        """Top-left corner of the centre crop, as torchvision's ``CenterCrop`` places it."""
        rw, rh = self.resized(width, height)
        return int(round((rw - self.size) / 2.0)), int(round((rh - self.size) / 2.0))


def ffmpeg_binary() -> str:
    """The system's ffmpeg when on PATH, else the one shipped by the imageio-ffmpeg package."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(path: str | Path) -> VideoInfo:
    """Read size, frame rate and duration of ``path`` from ``ffmpeg -i`` (no ffprobe needed)."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise DecodeError(f"{path}: unreadable ({err.strerror})") from err
    result = subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(path)],
                            capture_output=True, text=True, errors="replace")
    return parse_probe(path, result.stderr)


def parse_probe(path: Path, stderr: str) -> VideoInfo:
    """Parse the stream description that ``ffmpeg -i`` prints; raise DecodeError when none fits."""
    stream = _VIDEO_STREAM.search(stderr)
    if stream is None:
        reason = _input_error(stderr)
        if reason is None and "Audio:" in stderr:
            reason = "no video stream (audio only)"
        raise DecodeError(f"{path}: {reason or 'no video stream'}")
    description = stream.group(1)
    size = _SIZE.search(description)
    if size is None:
        raise DecodeError(f"{path}: video stream has no frame size ({description.strip()[:80]})")
    duration = _DURATION.search(stderr)
    seconds = float("nan")
    if duration:
        h, m, s = duration.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    colour = _COLOUR.search(description)
    pix_fmt = _PIX_FMT.search(description)
    return VideoInfo(path, int(size.group(1)), int(size.group(2)), _frame_rate(description), seconds,
                     colour.group(1) if colour else "", pix_fmt.group(1) if pix_fmt else "")


def _input_error(stderr: str) -> str | None:
    """Why ffmpeg could not open an input, from the first line that says so, without log prefixes."""
    for line in stderr.splitlines():
        if any(key in line for key in ("Invalid data", "moov atom not found", "Permission denied",
                                      "could not find codec", "Error opening input")):
            reason = _LOG_PREFIX.sub("", line).strip()
            return f"not a readable video ({reason.rsplit(': ', 1)[-1]})"
    return None


def _frame_rate(description: str) -> float:
    """The stream's average frame rate (``fps``, else ``tbr``), NTSC rates made exact."""
    rates = {kind: float(value) * (1000 if kilo else 1) for value, kilo, kind in _RATE.findall(description)}
    rate = rates.get("fps") or rates.get("tbr") or float("nan")
    return _NTSC_RATES.get(round(rate, 2), rate)


@functools.lru_cache(maxsize=None)
def has_zscale(binary: str) -> bool:
    """Whether this ffmpeg was built with zimg, the faster of its two resizers."""
    result = subprocess.run([binary, "-hide_banner", "-filters"], capture_output=True, text=True)
    return re.search(r"\bzscale\b", result.stdout) is not None


def _zimg_colour(info: VideoInfo) -> dict[str, str]:
    """zscale's colour options for ``info``: untagged streams read as swscale reads them
    (BT.601 matrix, limited range), with the same tags on the output, so a resize keeps them."""
    tokens = set(re.split(r"[,/\s]+", info.colour))
    colour = {} if tokens & set(_MATRICES) else {"matrixin": "470bg", "matrix": "470bg"}
    if not tokens & {"tv", "pc"}:
        colour.update(rangein="limited", range="limited")
    return colour


def _resize_crop(stream: object, info: VideoInfo, geometry: FrameGeometry) -> object:
    """Bicubic resize with Catmull-Rom weights (PIL's), the centre crop, and planar 8-bit RGB.

    zimg (``zscale``) when available: 2-3x less CPU than swscale for the same output. A YUV stream
    is resized in YUV (4:4:4, 16 bits) and converted to RGB after the crop: the matrix is linear, so
    the image is the same (0.1% of values differ, by at most 3 grey levels) for less work.
    """
    width, height = geometry.resized(info.width, info.height)
    if geometry.mode == "t3al-public":
        return _public_resize(stream, width, height)
    if not has_zscale(ffmpeg_binary()):
        stream = stream.filter("scale", width, height, flags=_SCALE_FLAGS, param0=0, param1=0.5)
        return _crop(stream, info, geometry).filter("format", "gbrp")
    resize = dict(w=width, h=height, filter="bicubic", param_a=0, param_b=0.5, **_zimg_colour(info))
    if info.pix_fmt.startswith("yuv"):
        stream = stream.filter("zscale", **resize).filter("format", "yuv444p16")
        return _crop(stream, info, geometry).filter("zscale").filter("format", "gbrp")
    return _crop(stream.filter("zscale", **resize).filter("format", "gbrp"), info, geometry)


def _public_resize(stream: object, width: int, height: int) -> object:
    """The public loader's pixels: OpenCV's 8-bit BGR frames at full resolution (bit-identical to
    ffmpeg's default conversion, swscale bicubic to bgr24), then PIL's bicubic resize of those
    8-bit pixels, here swscale's Catmull-Rom on the same RGB values (no YUV-domain resize)."""
    stream = stream.filter("scale", flags="bicubic").filter("format", "bgr24")
    return stream.filter("scale", width, height, flags=_SCALE_FLAGS, param0=0, param1=0.5).filter("format", "gbrp")


def _crop(stream: object, info: VideoInfo, geometry: FrameGeometry) -> object:
    """open_clip's centre crop of the resized frame (none when squashing to the size)."""
    if geometry.mode != "model":
        return stream
    x, y = geometry.crop_offset(info.width, info.height)
    return stream.filter("crop", geometry.size, geometry.size, x, y)


def _filter_graph(info: VideoInfo, geometry: FrameGeometry, fps: float | None, stream: object) -> object:
    """ffmpeg filters: optional frame-rate resampling, resize and crop, planes in the wanted order, showinfo.

    ``gbrp`` holds G, B, R planes; shuffling them makes the raw output R, G, B (or B, G, R) planes.
    """
    if fps:
        stream = stream.filter("fps", fps=fps)
    stream = _resize_crop(stream, info, geometry)
    order = {"RGB": (2, 0, 1), "BGR": (1, 0, 2)}[geometry.channels]
    return stream.filter("shuffleplanes", *order).filter("showinfo")


def _source(text: str) -> str:
    """Which part of ffmpeg printed a log line: the demuxer (its prefix names the container format,
    as ``[mov,mp4,m4a,3gp,3g2,mj2 @ 0x..]`` or ``[in#0/..]``) or the decoder (the codec, or ffmpeg
    itself: "Error while decoding stream")."""
    return "demuxer" if _DEMUXER.match(text) else "decoder"


def _read_pts(stderr: object, times: list[float], lines: list[str], errors: list[str]) -> None:
    """Collect each frame's ``pts_time`` from showinfo, the distinct error messages of the demuxer
    and decoder (``"demuxer: ..."``, ``"decoder: ..."``), and the other lines (for error messages).
    Each source keeps its own first ``MAX_WARNINGS`` messages, so a decoder's flood cannot hide the
    demuxer's "partial file", whichever ffmpeg prints first."""
    kept: dict[str, int] = {}
    for raw in iter(stderr.readline, b""):
        line = raw.decode("utf-8", "replace")
        match = _PTS_TIME.search(line)
        if match:
            value = match.group(3)
            times.append(float("nan") if match.group(2) == "NOPTS" else float(value))
            continue
        level = _LEVEL.search(line)
        text = line[:level.start()] + line[level.end():] if level else line
        if level and _is_decode_error(level.group(1), text):
            source = _source(text)
            message = f"{source}: {_SOURCES.sub('', text).strip()}"
            if message not in errors and kept.get(source, 0) < MAX_WARNINGS:
                errors.append(message)
                kept[source] = kept.get(source, 0) + 1
        if len(lines) < 200:
            lines.append(text.rstrip())


def _is_decode_error(level: str, text: str) -> bool:
    """Errors, and warnings of corrupt data: what ffmpeg says while it goes on with a damaged input."""
    return level in ("panic", "fatal", "error") or (level == "warning" and "corrupt" in text.lower())


def decode_warnings(info: VideoInfo, rate: float, n_frames: int, errors: list[str]) -> list[str]:
    """Why a decode that produced ``n_frames`` frames may not be the whole video: the demuxer's and
    decoder's error messages (``_read_pts``), and fewer frames than the container's duration holds at
    ``rate`` frames per second (by more than ``MISSING_FRAMES_S`` seconds or 2% of the duration)."""
    warnings = list(errors)
    if math.isfinite(info.duration) and info.duration > 0 and math.isfinite(rate) and rate > 0:
        expected = info.duration * rate
        if expected - n_frames > rate * max(MISSING_FRAMES_S, 0.02 * info.duration):
            warnings.append(f"decoded {n_frames} frames ({n_frames / rate:.2f} s) of the {expected:.0f} "
                            f"({info.duration:.2f} s) the container declares")
    return warnings


def stream_frames(info: VideoInfo, geometry: FrameGeometry, batch_size: int = 64,
                  fps: float | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frames, timestamps)``: uint8 arrays (B, size, size, 3) and seconds (B,).

    Every frame at its own presentation time by default; ``fps`` resamples to that rate. The
    frames are a (B, H, W, 3) view of planar (B, 3, H, W) memory: the model's layout, so turning
    them into a tensor needs no reordering.
    """
    stream = FrameStream(info, geometry, fps)
    try:
        yield from stream.batches(batch_size)
    finally:
        stream.close()


def ffmpeg_command(info: VideoInfo, geometry: FrameGeometry, fps: float | None = None) -> list[str]:
    """The ffmpeg command line that writes the video's model-ready raw frames to stdout."""
    graph = _filter_graph(info, geometry, fps, ffmpeg.input(str(info.path)).video)
    return graph.output("pipe:", format="rawvideo", pix_fmt="gbrp", fps_mode="passthrough") \
        .global_args("-hide_banner", "-nostdin", "-loglevel", "level+info").compile(cmd=ffmpeg_binary())


class FrameStream:
    """ffmpeg decoding one video into a pipe, started when the stream is made.

    Making the next video's stream before the current one is read to its end lets ffmpeg start
    and decode the first frames meanwhile, so a folder of videos is decoded without idle gaps.
    """

    def __init__(self, info: VideoInfo, geometry: FrameGeometry, fps: float | None = None) -> None:
        self.info = info
        self._start(ffmpeg_command(info, geometry, fps), geometry, fps)

    def _start(self, command: list[str], geometry: FrameGeometry, fps: float | None) -> None:
        """Run ``command`` (ffmpeg writing raw frames to stdout) and read its frame times meanwhile."""
        self.geometry, self.fps = geometry, fps
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.times: list[float] = []
        self.log: list[str] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []  # set when the stream has been read to its end
        self.reader = threading.Thread(target=_read_pts, daemon=True,
                                       args=(self.process.stderr, self.times, self.log, self.errors))
        self.reader.start()

    def batches(self, batch_size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(frames, timestamps)`` batches as ``stream_frames`` yields them; DecodeError when none.

        Read to the end, ``warnings`` says why the frames may not be the whole video (``decode_warnings``).
        """
        size = self.geometry.size
        frame_bytes = size * size * 3
        sent = 0
        try:
            while True:
                buffer = bytearray(frame_bytes * batch_size)  # writable, so torch can share it without a copy
                got = self.process.stdout.readinto(buffer)
                n = got // frame_bytes
                if n:
                    planes = np.frombuffer(buffer, np.uint8, count=n * frame_bytes)
                    frames = planes.reshape(n, 3, size, size).transpose(0, 2, 3, 1)
                    yield frames, _timestamps(self.times, self.reader, sent, n, self.fps or self.info.fps)
                    sent += n
                if got < len(buffer):
                    break
        finally:
            code = self.close()
        if code != 0 and sent == 0:
            raise DecodeError(f"{self.info.path}: ffmpeg failed ({_last_error(self.log)})")
        if sent == 0:
            raise DecodeError(f"{self.info.path}: no decodable video frames")
        self.warnings = decode_warnings(self.info, self.fps or self.info.fps, sent, self.errors)

    def close(self) -> int:
        """Stop ffmpeg if it is still running (it ends on the closed pipe); its exit status."""
        self.process.stdout.close()
        code = self.process.wait()
        self.reader.join()
        return code


def _timestamps(times: list[float], reader: threading.Thread, start: int, n: int, fps: float) -> np.ndarray:
    """Presentation times of frames ``start .. start+n-1``, waiting for showinfo to report them."""
    while len(times) < start + n and reader.is_alive():
        reader.join(0.005)
    found = np.array(times[start: start + n], dtype=np.float64)
    fallback = (start + np.arange(n)) / fps
    if len(found) < n:
        found = np.concatenate([found, fallback[len(found):]])
    return np.where(np.isfinite(found), found, fallback)


def _last_error(log: list[str]) -> str:
    lines = [line for line in log if line and not line.startswith(("  ", "Stream", "Input", "Output"))]
    return lines[-1].strip() if lines else "no output"
