"""Probed media facts (recordings/probe.py): the demo recordings as ffprobe sees them, damage found.

ffprobe comes from Debian's ffmpeg package, installed by ``scripts/ensure-ffmpeg`` when missing;
where that is not possible the comparison is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest

from ccgateway.demo.media import RENDITIONS, Rendition, write_demo_set
from ccgateway.recordings.probe import MediaFacts, MediaState, probe_file, probe_source
from ccgateway.sources.base import SourceError, SourceStat
from ccgateway.sources.local import LocalSource

REPO = Path(__file__).resolve().parents[2]
SECONDS = 3.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo_set(tmp_path_factory.mktemp("probe"), "conf", seconds=SECONDS)


@pytest.fixture(scope="module")
def ffprobe() -> str:
    done = subprocess.run(
        [str(REPO / "scripts" / "ensure-ffmpeg")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        why = f"ffprobe is not available: {done.stderr.strip()[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (required under CI)")
        pytest.skip(why)
    return done.stdout.strip().splitlines()[-1]


def _ffprobe(binary: str, path: Path) -> dict[str, object]:
    done = subprocess.run(
        [binary, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def _boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """The top-level boxes (type, offset, size) of an MP4 with 32-bit box sizes."""
    boxes, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append((data[offset + 4 : offset + 8], offset, size))
        offset += size
    return boxes


def _remux_moov_last(source: Path, target: Path) -> None:
    """The same packets, muxed with FFmpeg's default: the moov written after the mdat."""
    with av.open(str(source)) as given, av.open(str(target), "w", format="mp4") as written:
        stream = written.add_stream_from_template(given.streams.video[0])
        for packet in given.demux():
            if packet.dts is None:
                continue
            packet.stream = stream
            written.mux(packet)


@pytest.mark.parametrize("rendition", RENDITIONS, ids=lambda r: r.key)
def test_demo_recordings_as_ffprobe_sees_them(
    demo: dict[str, Path], ffprobe: str, rendition: Rendition
) -> None:
    path = demo[rendition.key]
    facts = probe_file(path)
    seen = _ffprobe(ffprobe, path)
    streams = seen["streams"]
    assert isinstance(streams, list)
    video = next(s for s in streams if s["codec_type"] == "video")
    form = seen["format"]
    assert isinstance(form, dict)
    assert facts.state is MediaState.READY
    assert facts.reason == ""
    assert (facts.width, facts.height) == (video["width"], video["height"])
    assert (facts.width, facts.height) == (rendition.width, rendition.height)
    assert facts.video_codec == video["codec_name"] == "h264"
    assert facts.audio_codec is None
    assert facts.duration_s is not None
    assert abs(facts.duration_s - float(form["duration"])) <= 0.1
    assert abs(facts.duration_s - SECONDS) <= 0.1
    assert facts.size == int(form["size"]) == path.stat().st_size
    assert facts.container == form["format_name"]
    assert facts.media_type == "video/mp4"
    assert facts.fast_start is True


def test_truncated_fast_start_mp4_is_damaged(demo: dict[str, Path], tmp_path: Path) -> None:
    data = demo["hd"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 6 // 10])
    facts = probe_file(path)
    assert facts.state is MediaState.DAMAGED
    assert facts.reason.startswith("truncated: the 'mdat' box")
    assert "the file ends after" in facts.reason
    # What the index still tells is kept.
    assert (facts.width, facts.height, facts.fast_start) == (1280, 720, True)
    assert facts.size == len(data) * 6 // 10


def test_samples_past_the_end_are_damage(demo: dict[str, Path], tmp_path: Path) -> None:
    # A cut file whose mdat says "to the end of the file" (size 0): the boxes look whole, the
    # index's samples do not fit.
    data = bytearray(demo["hd"].read_bytes())
    _, mdat_at, _ = next(box for box in _boxes(bytes(data)) if box[0] == b"mdat")
    data[mdat_at : mdat_at + 4] = bytes(4)
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    facts = probe_file(path)
    assert facts.state is MediaState.DAMAGED
    assert facts.reason.startswith("stream 0: ")
    assert "truncated" in facts.reason or "past the end" in facts.reason


def test_random_bytes_are_damaged(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(os.urandom(100_000))
    facts = probe_file(path)
    assert facts.state is MediaState.DAMAGED
    assert facts.reason.startswith("not a media file FFmpeg can open")
    assert facts.size == 100_000
    assert (facts.width, facts.video_codec, facts.duration_s) == (None, None, None)


def test_random_bytes_named_for_a_text_art_format_are_damaged(tmp_path: Path) -> None:
    # FFmpeg "opens" any bytes named *.bin as text art.
    path = tmp_path / "noise.bin"
    path.write_bytes(os.urandom(200_000))
    facts = probe_file(path)
    assert facts.state is MediaState.DAMAGED
    assert facts.reason.startswith("not a media file FFmpeg can")
    assert facts.video_codec is None


def test_mp4_without_moov_is_damaged(demo: dict[str, Path], tmp_path: Path) -> None:
    data = demo["sd"].read_bytes()
    path = tmp_path / "unfinished.mp4"
    path.write_bytes(
        b"".join(data[at : at + size] for kind, at, size in _boxes(data) if kind != b"moov")
    )
    facts = probe_file(path)
    assert facts.state is MediaState.DAMAGED
    assert facts.reason.startswith("no moov box")
    assert facts.fast_start is False


def test_moov_at_the_end_is_ready_but_not_fast_start(demo: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "slow.mp4"
    _remux_moov_last(demo["hd"], path)
    kinds = [kind for kind, _, _ in _boxes(path.read_bytes())]
    assert kinds.index(b"mdat") < kinds.index(b"moov")  # what FFmpeg's muxer does by default
    facts = probe_file(path)
    assert facts.state is MediaState.READY
    assert facts.fast_start is False
    assert (facts.width, facts.height, facts.video_codec) == (1280, 720, "h264")


def test_missing_file(tmp_path: Path) -> None:
    facts = probe_file(tmp_path / "gone.mp4")
    assert facts == MediaFacts(
        state=MediaState.MISSING, reason=f"{tmp_path}/gone.mp4: no such file"
    )


def test_a_directory_is_no_file(tmp_path: Path) -> None:
    facts = probe_file(tmp_path)
    assert (facts.state, facts.reason) == (MediaState.MISSING, f"{tmp_path}: not a regular file")


def test_json_shape(demo: dict[str, Path]) -> None:
    shape = probe_file(demo["aux"]).to_json()
    assert shape == {
        "state": "ready",
        "reason": "",
        "size": demo["aux"].stat().st_size,
        "container": "mov,mp4,m4a,3gp,3g2,mj2",
        "mediaType": "video/mp4",
        "durationS": SECONDS,
        "width": 1024,
        "height": 768,
        "videoCodec": "h264",
        "audioCodec": None,
        "fastStart": True,
    }
    assert MediaFacts(state=MediaState.MISSING, reason="gone").to_json()["durationS"] is None


class Remote:
    """A local file served as a remote source would be: no local path, ranged reads only."""

    def __init__(self, path: Path, fail_at: int | None = None) -> None:
        self._local = LocalSource(path)
        self._fail_at = fail_at
        self.reads: list[tuple[int, int]] = []

    @property
    def uri(self) -> str:
        return f"https://recordings.example/{self._local.uri}"

    @property
    def local_path(self) -> Path | None:
        return None

    async def stat(self) -> SourceStat:
        return await self._local.stat()

    async def read(self, start: int, length: int) -> AsyncIterator[bytes]:
        self.reads.append((start, length))
        offset = start
        async for chunk in self._local.read(start, length):
            if self._fail_at is not None and offset + len(chunk) > self._fail_at:
                raise SourceError("upstream went away")
            offset += len(chunk)
            yield chunk


async def test_remote_source_gives_the_same_facts(demo: dict[str, Path], tmp_path: Path) -> None:
    slow = tmp_path / "slow.mp4"
    _remux_moov_last(demo["hd"], slow)  # the demuxer seeks to the end and back
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(demo["hd"].read_bytes()[:100_000])
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(os.urandom(50_000))
    for path in (demo["hd"], demo["sd"], demo["aux"], slow, cut, noise):
        assert await probe_source(Remote(path)) == probe_file(path)
    assert (await probe_source(Remote(tmp_path / "gone.mp4"))).state is MediaState.MISSING


async def test_remote_source_failing_is_an_error_not_damage(demo: dict[str, Path]) -> None:
    with pytest.raises(SourceError, match="upstream went away"):
        await probe_source(Remote(demo["hd"], fail_at=200_000))


async def test_local_source_is_probed_by_its_path(demo: dict[str, Path]) -> None:
    assert await probe_source(LocalSource(demo["sd"])) == probe_file(demo["sd"])
