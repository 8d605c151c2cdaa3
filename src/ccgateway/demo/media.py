"""Playable H.264/MP4 demo recordings of a "video call", drawn frame by frame.

Everything is drawn in pure Python straight into the three planes of a ``yuv420p`` frame
(no numpy, no Pillow) and encoded with the H.264 encoder bundled in PyAV's FFmpeg build.
A set holds the three renditions a CC-Gateway conference recording has: the HD and SD
camera streams (a moving gradient, a bouncing box, a label and a frame counter) and the
auxiliary content stream (1024x768 slides whose blocks change once a second).
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import av.video.stream

__all__ = ["RENDITIONS", "Rendition", "h264_encoder", "write_demo_recording", "write_demo_set"]

Color = tuple[int, int, int]
"""A (Y, Cb, Cr) triple in limited ("TV") range, BT.601."""

_BLACK: Color = (16, 128, 128)
_WHITE: Color = (235, 128, 128)
_PAGE: Color = (226, 128, 128)
_INK: Color = (40, 128, 128)
_GREY: Color = (150, 128, 128)
_LIGHT_GREY: Color = (196, 128, 128)
_PANEL: Color = (214, 131, 126)
_TITLE_BLUE: Color = (50, 153, 116)
_ORANGE: Color = (152, 49, 188)
_RED: Color = (91, 100, 211)
_GREEN: Color = (110, 114, 60)
_TEAL: Color = (108, 159, 61)
_BLUE: Color = (91, 184, 98)
_CHART_COLORS = (_BLUE, _ORANGE, _GREEN, _RED, _TEAL, _TITLE_BLUE)


@dataclass(frozen=True)
class Rendition:
    key: str
    width: int
    height: int
    slides: bool


RENDITIONS = (
    Rendition("hd", 1280, 720, slides=False),
    Rendition("sd", 640, 360, slides=False),
    Rendition("aux", 1024, 768, slides=True),
)

# Bits per pixel per frame: the camera's full-frame motion needs more than flat slides.
_CAMERA_BPP = 0.06
_SLIDES_BPP = 0.02

# fmt: off
_FONT_ROWS = {
    " ": ".....,.....,.....,.....,.....,.....,.....",
    "0": ".###.,#...#,#..##,#.#.#,##..#,#...#,.###.",
    "1": "..#..,.##..,..#..,..#..,..#..,..#..,.###.",
    "2": ".###.,#...#,....#,...#.,..#..,.#...,#####",
    "3": "#####,...#.,..#..,...#.,....#,#...#,.###.",
    "4": "...#.,..##.,.#.#.,#..#.,#####,...#.,...#.",
    "5": "#####,#....,####.,....#,....#,#...#,.###.",
    "6": "..##.,.#...,#....,####.,#...#,#...#,.###.",
    "7": "#####,....#,...#.,..#..,.#...,.#...,.#...",
    "8": ".###.,#...#,#...#,.###.,#...#,#...#,.###.",
    "9": ".###.,#...#,#...#,.####,....#,...#.,.##..",
    "A": ".###.,#...#,#...#,#####,#...#,#...#,#...#",
    "B": "####.,#...#,#...#,####.,#...#,#...#,####.",
    "C": ".###.,#...#,#....,#....,#....,#...#,.###.",
    "D": "###..,#..#.,#...#,#...#,#...#,#..#.,###..",
    "E": "#####,#....,#....,####.,#....,#....,#####",
    "F": "#####,#....,#....,####.,#....,#....,#....",
    "G": ".###.,#...#,#....,#.###,#...#,#...#,.####",
    "H": "#...#,#...#,#...#,#####,#...#,#...#,#...#",
    "I": ".###.,..#..,..#..,..#..,..#..,..#..,.###.",
    "J": "..###,...#.,...#.,...#.,...#.,#..#.,.##..",
    "K": "#...#,#..#.,#.#..,##...,#.#..,#..#.,#...#",
    "L": "#....,#....,#....,#....,#....,#....,#####",
    "M": "#...#,##.##,#.#.#,#.#.#,#...#,#...#,#...#",
    "N": "#...#,#...#,##..#,#.#.#,#..##,#...#,#...#",
    "O": ".###.,#...#,#...#,#...#,#...#,#...#,.###.",
    "P": "####.,#...#,#...#,####.,#....,#....,#....",
    "Q": ".###.,#...#,#...#,#...#,#.#.#,#..#.,.##.#",
    "R": "####.,#...#,#...#,####.,#.#..,#..#.,#...#",
    "S": ".####,#....,#....,.###.,....#,....#,####.",
    "T": "#####,..#..,..#..,..#..,..#..,..#..,..#..",
    "U": "#...#,#...#,#...#,#...#,#...#,#...#,.###.",
    "V": "#...#,#...#,#...#,#...#,#...#,.#.#.,..#..",
    "W": "#...#,#...#,#...#,#.#.#,#.#.#,#.#.#,.#.#.",
    "X": "#...#,#...#,.#.#.,..#..,.#.#.,#...#,#...#",
    "Y": "#...#,#...#,.#.#.,..#..,..#..,..#..,..#..",
    "Z": "#####,....#,...#.,..#..,.#...,#....,#####",
    "-": ".....,.....,.....,#####,.....,.....,.....",
    "_": ".....,.....,.....,.....,.....,.....,#####",
    ".": ".....,.....,.....,.....,.....,.##..,.##..",
    ":": ".....,.##..,.##..,.....,.##..,.##..,.....",
    "/": ".....,....#,...#.,..#..,.#...,#....,.....",
    "#": ".#.#.,.#.#.,#####,.#.#.,#####,.#.#.,.#.#.",
    "(": "...#.,..#..,.#...,.#...,.#...,..#..,...#.",
    ")": ".#...,..#..,...#.,...#.,...#.,..#..,.#...",
    "?": ".###.,#...#,....#,...#.,..#..,.....,..#..",
}
# fmt: on
_GLYPH_W = 5
_GLYPH_H = 7
_ADVANCE = _GLYPH_W + 1


def _runs(row: str) -> tuple[tuple[int, int], ...]:
    """The (start, length) of each run of lit pixels in a glyph row."""
    runs: list[tuple[int, int]] = []
    start = -1
    for column, pixel in enumerate(row + "."):
        if pixel == "#" and start < 0:
            start = column
        elif pixel != "#" and start >= 0:
            runs.append((start, column - start))
            start = -1
    return tuple(runs)


_FONT = {char: tuple(_runs(row) for row in rows.split(",")) for char, rows in _FONT_ROWS.items()}


def _even(value: int) -> int:
    return value & ~1


def _bounce(position: int, span: int) -> int:
    """Fold an ever-growing position into 0..span and back, like a ball between two walls."""
    if span <= 0:
        return 0
    folded = position % (2 * span)
    return folded if folded <= span else 2 * span - folded


def _mix(*values: int) -> int:
    """A small deterministic hash (not for security): varies the slides from second to second."""
    state = 0x9E3779B9
    for value in values:
        state = ((state ^ value) * 0x01000193) & 0xFFFFFFFF
        state ^= state >> 15
    return state


def _triangle(length: int, period: int, low: int, high: int) -> bytes:
    half = period // 2
    return bytes(low + (high - low) * abs(i % period - half) // half for i in range(length))


class _Canvas:
    """A yuv420p picture as three bytearrays; coordinates are in luma pixels."""

    __slots__ = ("chroma_height", "chroma_width", "cb", "cr", "height", "luma", "width")

    def __init__(self, width: int, height: int, color: Color = _BLACK) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"width and height must be even and positive, not {width}x{height}")
        self.width = width
        self.height = height
        self.chroma_width = width // 2
        self.chroma_height = height // 2
        chroma_size = self.chroma_width * self.chroma_height
        self.luma = bytearray(bytes((color[0],)) * (width * height))
        self.cb = bytearray(bytes((color[1],)) * chroma_size)
        self.cr = bytearray(bytes((color[2],)) * chroma_size)

    def copy(self) -> _Canvas:
        clone = _Canvas.__new__(_Canvas)
        clone.width, clone.height = self.width, self.height
        clone.chroma_width, clone.chroma_height = self.chroma_width, self.chroma_height
        clone.luma, clone.cb, clone.cr = self.luma[:], self.cb[:], self.cr[:]
        return clone

    def rect(self, x: int, y: int, width: int, height: int, color: Color) -> None:
        """Fill a rectangle, clipped to the canvas."""
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, self.width), min(y + height, self.height)
        if x0 >= x1 or y0 >= y1:
            return
        solid = bytes((color[0],)) * (x1 - x0)
        for row in range(y0, y1):
            start = row * self.width + x0
            self.luma[start : start + len(solid)] = solid
        cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2
        solid_cb = bytes((color[1],)) * (cx1 - cx0)
        solid_cr = bytes((color[2],)) * (cx1 - cx0)
        for row in range(cy0, cy1):
            start = row * self.chroma_width + cx0
            self.cb[start : start + len(solid_cb)] = solid_cb
            self.cr[start : start + len(solid_cr)] = solid_cr

    def paste(self, source: _Canvas, x: int, y: int) -> None:
        """Copy another canvas onto this one at an (even) position, clipped to the canvas."""
        x, y = _even(x), _even(y)
        for plane, source_plane, scale in (
            (self.luma, source.luma, 1),
            (self.cb, source.cb, 2),
            (self.cr, source.cr, 2),
        ):
            dst_w, dst_h = self.width // scale, self.height // scale
            src_w, src_h = source.width // scale, source.height // scale
            px, py = x // scale, y // scale
            skip_x, skip_y = max(0, -px), max(0, -py)
            span = min(src_w, dst_w - px) - skip_x
            if span <= 0:
                continue
            for row in range(skip_y, min(src_h, dst_h - py)):
                src = row * src_w + skip_x
                dst = (py + row) * dst_w + px + skip_x
                plane[dst : dst + span] = source_plane[src : src + span]

    def to_frame(self) -> av.VideoFrame:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, data, width in zip(
            frame.planes,
            (self.luma, self.cb, self.cr),
            (self.width, self.chroma_width, self.chroma_width),
            strict=True,
        ):
            if plane.line_size == width:
                plane.update(bytes(data))
            else:  # the frame's rows are padded for alignment
                padding = bytes(plane.line_size - width)
                rows = (data[start : start + width] for start in range(0, len(data), width))
                plane.update(b"".join(bytes(row) + padding for row in rows))
        return frame


@functools.lru_cache(maxsize=256)
def _text(text: str, scale: int, ink: Color, paper: Color) -> _Canvas:
    """Render one line of text (5x7 pixel font, upper case) on a padded label."""
    text = text.upper()
    pad = 2 * scale
    width = max(1, len(text) * _ADVANCE * scale - scale) + 2 * pad
    height = _GLYPH_H * scale + 2 * pad
    canvas = _Canvas(width + width % 2, height + height % 2, paper)
    for index, char in enumerate(text):
        left = pad + index * _ADVANCE * scale
        for row, runs in enumerate(_FONT.get(char, _FONT["?"])):
            for start, length in runs:
                canvas.rect(left + start * scale, pad + row * scale, length * scale, scale, ink)
    return canvas


def _timestamp(index: int, fps: int) -> str:
    seconds, frames = divmod(index, fps)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes:02d}:{seconds:02d}.{frames:02d}"


class _CameraPainter:
    """A webcam stand-in: drifting diagonal colour bands, a bouncing box, a label, a counter."""

    def __init__(self, width: int, height: int, label: str, fps: int) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.scale = max(1, height // 180)
        self.label = _text(f"{label} {width}x{height}", self.scale, _WHITE, _BLACK)
        self.luma_ramp = _triangle(width + 256, 256, 40, 200)
        self.cb_ramp = _triangle(width // 2 + 256, 256, 96, 168)
        self.cr_wave = _triangle(288, 288, 96, 168)
        self.box_w, self.box_h = _even(width // 5), _even(height // 3)

    def paint(self, index: int) -> _Canvas:
        width, height, scale = self.width, self.height, self.scale
        canvas = _Canvas(width, height)
        # Diagonal bands moving down-right: each row is a window on a triangle wave.
        ramp = memoryview(self.luma_ramp)
        canvas.luma[:] = b"".join(ramp[(row + 3 * index) % 256 :][:width] for row in range(height))
        chroma_w = canvas.chroma_width
        cb_ramp = memoryview(self.cb_ramp)
        canvas.cb[:] = b"".join(
            cb_ramp[(index + row // 4) % 256 :][:chroma_w] for row in range(canvas.chroma_height)
        )
        cr_wave = self.cr_wave
        canvas.cr[:] = b"".join(
            bytes((cr_wave[(row + 2 * index) % len(cr_wave)],)) * chroma_w
            for row in range(canvas.chroma_height)
        )
        # The "participant": a framed box bouncing off the edges.
        x = _even(_bounce(index * max(2, width // 90), width - self.box_w))
        y = _even(_bounce(index * max(2, height // 70), height - self.box_h))
        border = 2 * scale
        canvas.rect(x, y, self.box_w, self.box_h, _WHITE)
        canvas.rect(
            x + border, y + border, self.box_w - 2 * border, self.box_h - 2 * border, _ORANGE
        )
        eye = 4 * scale
        for eye_x in (x + self.box_w // 3 - eye // 2, x + 2 * self.box_w // 3 - eye // 2):
            canvas.rect(eye_x, y + self.box_h // 3, eye, eye, _INK)
        canvas.rect(x + self.box_w // 3, y + 2 * self.box_h // 3, self.box_w // 3, scale * 2, _INK)
        # Overlays: the label, a blinking "recording" dot and a frame counter.
        margin = _even(4 * scale)
        canvas.paste(self.label, margin, margin)
        if index % self.fps < self.fps // 2:
            dot = 6 * scale
            canvas.rect(width - margin - dot, margin, dot, dot, _RED)
        counter = _text(f"#{index:05d} {_timestamp(index, self.fps)}", scale, _WHITE, _BLACK)
        canvas.paste(counter, margin, height - margin - counter.height)
        return canvas


class _SlidesPainter:
    """Shared content: flat slide pages whose bullets and chart change once a second."""

    def __init__(self, width: int, height: int, label: str, fps: int, frames: int) -> None:
        self.width, self.height, self.fps, self.frames = width, height, fps, frames
        self.scale = max(2, _even(height // 192))
        self.label = label
        self.page: _Canvas | None = None
        self.page_number = -1

    def _page(self, number: int) -> _Canvas:
        width, height, scale = self.width, self.height, self.scale
        canvas = _Canvas(width, height, _PAGE)
        bar = _even(height // 9)
        canvas.rect(0, 0, width, bar, _TITLE_BLUE)
        title = _text(f"{self.label} - shared content", scale, _WHITE, _TITLE_BLUE)
        canvas.paste(title, 2 * scale, (bar - title.height) // 2)
        margin = _even(width // 20)
        heading = _text(f"Slide {number + 1}", scale + 2, _INK, _PAGE)
        canvas.paste(heading, margin, bar + 4 * scale)
        # Bullets: the highlighted one and the line lengths change every second.
        top = bar + 4 * scale + heading.height + 6 * scale
        line_h = _even(height // 14)
        text_w = width // 2 - margin
        for line in range(6):
            y = top + line * line_h
            highlighted = line == number % 6
            canvas.rect(margin, y, 3 * scale, 3 * scale, _ORANGE if highlighted else _INK)
            length = text_w // 3 + _mix(number, line) % (text_w * 2 // 3)
            canvas.rect(margin + 6 * scale, y, length, 3 * scale, _BLUE if highlighted else _GREY)
        # A bar chart on the right-hand half.
        panel_x, panel_y = width // 2 + margin // 2, top
        panel_w, panel_h = width - panel_x - margin, _even(height * 5 // 9)
        canvas.rect(panel_x, panel_y, panel_w, panel_h, _PANEL)
        slot = panel_w // len(_CHART_COLORS)
        for column, color in enumerate(_CHART_COLORS):
            value = 20 + _mix(column, number, 7) % 75
            bar_h = _even((panel_h - 4 * scale) * value // 100)
            bar_x = panel_x + column * slot + slot // 5
            canvas.rect(bar_x, panel_y + panel_h - 2 * scale - bar_h, slot * 3 // 5, bar_h, color)
        canvas.rect(margin, height - _even(height // 12), width - 2 * margin, scale, _LIGHT_GREY)
        return canvas

    def paint(self, index: int) -> _Canvas:
        number = index // self.fps
        if self.page is None or number != self.page_number:
            self.page, self.page_number = self._page(number), number
        canvas = self.page.copy()
        width, height, scale = self.width, self.height, self.scale
        margin = _even(width // 20)
        footer_y = height - _even(height // 12)
        done = (width - 2 * margin) * (index + 1) // self.frames
        canvas.rect(margin, footer_y, done, scale, _BLUE)
        counter = _text(
            f"page {number + 1}  {_timestamp(index, self.fps)}", scale // 2 or 1, _GREY, _PAGE
        )
        canvas.paste(counter, width - margin - counter.width, footer_y + 2 * scale)
        return canvas


_ENCODER_PREFERENCE = ("libx264", "libopenh264", "h264")


@functools.cache
def h264_encoder() -> str:
    """The name of the H.264 encoder this PyAV build offers (libx264 when it is there)."""
    for name in _ENCODER_PREFERENCE:
        try:
            codec = av.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        if codec.canonical_name == "h264":
            return codec.name
    raise RuntimeError("this PyAV build has no H.264 encoder")


def _encoder_options(encoder: str, fps: int) -> dict[str, str]:
    if encoder == "libx264":
        # A keyframe every two seconds (seekable), no scene-cut keyframes in between.
        return {"preset": "veryfast", "x264-params": f"keyint={2 * fps}:min-keyint={fps}"}
    return {}


def write_demo_recording(
    path: Path,
    *,
    width: int,
    height: int,
    seconds: float,
    label: str,
    slides: bool = False,
    fps: int = 25,
) -> None:
    """Write a playable H.264 (yuv420p) MP4 of synthetic content, atomically.

    The file is encoded under a temporary name in the same directory and renamed into place,
    so ``path`` is either absent, its previous content, or a complete recording.
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and positive, not {width}x{height}")
    if fps <= 0 or not seconds > 0:
        raise ValueError(f"fps and seconds must be positive, not {fps} and {seconds}")
    frames = max(1, round(seconds * fps))
    painter: _CameraPainter | _SlidesPainter
    if slides:
        painter = _SlidesPainter(width, height, label, fps, frames)
    else:
        painter = _CameraPainter(width, height, label, fps)
    encoder = h264_encoder()
    bpp = _SLIDES_BPP if slides else _CAMERA_BPP

    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        with av.open(
            temporary, mode="w", format="mp4", container_options={"movflags": "+faststart"}
        ) as container:
            container.metadata["title"] = label
            stream = container.add_stream(encoder, rate=fps, options=_encoder_options(encoder, fps))
            if not isinstance(stream, av.video.stream.VideoStream):  # pragma: no cover
                raise TypeError(f"{encoder} is not a video encoder")
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.bit_rate = int(width * height * fps * bpp)
            for index in range(frames):
                frame = painter.paint(index).to_frame()
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_demo_set(directory: Path, conference_label: str, seconds: float = 4.0) -> dict[str, Path]:
    """Write the HD, SD and auxiliary (slides) renditions as ``<label>-<key>.mp4``.

    Returns the paths by rendition key ("hd", "sd", "aux"). Files that already exist with a
    nonzero size are kept as they are, so calling this again is cheap.
    """
    if not conference_label or Path(conference_label).name != conference_label:
        raise ValueError(f"not usable in a file name: {conference_label!r}")
    if conference_label.startswith("."):
        raise ValueError(f"not usable in a file name: {conference_label!r}")
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for rendition in RENDITIONS:
        path = directory / f"{conference_label}-{rendition.key}.mp4"
        if not (path.is_file() and path.stat().st_size > 0):
            write_demo_recording(
                path,
                width=rendition.width,
                height=rendition.height,
                seconds=seconds,
                label=f"{conference_label} {rendition.key}",
                slides=rendition.slides,
            )
        paths[rendition.key] = path
    return paths
