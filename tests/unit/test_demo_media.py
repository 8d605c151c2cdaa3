from __future__ import annotations

from pathlib import Path

import av
import pytest

from ccgateway.demo.media import RENDITIONS, Rendition, write_demo_recording, write_demo_set

SECONDS = 1.0
FPS = 25


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo_set(tmp_path_factory.mktemp("media"), "7a008307-0", seconds=SECONDS)


def _top_level_atoms(path: Path) -> list[bytes]:
    data = path.read_bytes()
    atoms, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        atoms.append(data[offset + 4 : offset + 8])
        if size == 1:  # 64-bit size follows the type
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        if size < 8:
            break
        offset += size
    return atoms


def test_writes_three_named_renditions(demo_set: dict[str, Path]) -> None:
    assert sorted(demo_set) == ["aux", "hd", "sd"]
    for key, path in demo_set.items():
        assert path.name == f"7a008307-0-{key}.mp4"
        assert path.stat().st_size > 0
    # Only the three recordings: no temporary file left behind.
    assert sorted(p.name for p in next(iter(demo_set.values())).parent.iterdir()) == sorted(
        p.name for p in demo_set.values()
    )


@pytest.mark.parametrize("rendition", RENDITIONS, ids=lambda r: r.key)
def test_rendition_is_playable_h264_mp4(demo_set: dict[str, Path], rendition: Rendition) -> None:
    path = demo_set[rendition.key]
    with av.open(str(path)) as container:
        assert "mp4" in container.format.name.split(",")
        assert len(container.streams) == 1
        assert len(container.streams.video) == 1
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (
            rendition.width,
            rendition.height,
        )
        assert stream.codec_context.pix_fmt == "yuv420p"
        frames = list(container.decode(stream))
    assert len(frames) >= FPS * SECONDS * 0.9
    assert all((f.width, f.height) == (rendition.width, rendition.height) for f in frames)
    # The content moves: the first and the last frame differ.
    first, last = frames[0].planes[0], frames[-1].planes[0]
    assert bytes(first) != bytes(last)
    # faststart: the index comes before the media data, so playback starts while downloading.
    atoms = _top_level_atoms(path)
    assert atoms.index(b"moov") < atoms.index(b"mdat")


def test_set_is_idempotent(tmp_path: Path) -> None:
    first = write_demo_set(tmp_path, "conf", seconds=0.2)
    stamps = {key: (path.stat().st_ino, path.stat().st_mtime_ns) for key, path in first.items()}
    second = write_demo_set(tmp_path, "conf", seconds=0.2)
    assert second == first
    # Not rewritten: a rewrite renames a new file (new inode) into place.
    assert {key: (path.stat().st_ino, path.stat().st_mtime_ns) for key, path in second.items()} == (
        stamps
    )


def test_empty_file_is_rewritten(tmp_path: Path) -> None:
    (tmp_path / "conf-sd.mp4").touch()
    paths = write_demo_set(tmp_path, "conf", seconds=0.2)
    assert paths["sd"].stat().st_size > 0
    with av.open(str(paths["sd"])) as container:
        assert container.streams.video[0].codec_context.name == "h264"


@pytest.mark.parametrize("label", ["", "a/b", "..", ".hidden"])
def test_rejects_labels_unfit_for_file_names(tmp_path: Path, label: str) -> None:
    with pytest.raises(ValueError, match="file name"):
        write_demo_set(tmp_path, label, seconds=0.2)


def test_odd_size_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        write_demo_recording(tmp_path / "odd.mp4", width=641, height=360, seconds=0.2, label="x")
    assert list(tmp_path.iterdir()) == []


def test_unaligned_size_is_encoded(tmp_path: Path) -> None:
    # 100 pixels wide: the frame's rows are padded for alignment.
    path = tmp_path / "small.mp4"
    write_demo_recording(path, width=100, height=50, seconds=0.2, label="small", fps=10)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 2
    assert (frames[0].width, frames[0].height) == (100, 50)
