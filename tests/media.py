"""Small playable recordings for tests that need the probe to find a file whole (``ready``).

Registering an MCU recording probes each file (recordings/probe.py): random bytes register as
``damaged`` and are announced as ``AgentMediaEvent_Record_Fail``. A test that expects the plain
``AgentMediaEvent_Record`` registers one of these instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from tempfile import TemporaryDirectory

from ccgateway.demo.media import write_demo_recording

WIDTH, HEIGHT, SECONDS = 320, 180, 1.0


@cache
def playable_bytes() -> bytes:
    """The recording's bytes, encoded once per test process."""
    with TemporaryDirectory(prefix="ccgw-playable-") as directory:
        path = Path(directory) / "playable.mp4"
        write_demo_recording(path, width=WIDTH, height=HEIGHT, seconds=SECONDS, label="test")
        return path.read_bytes()


def write_playable(path: Path) -> Path:
    """A playable H.264 MP4 of ``WIDTH`` x ``HEIGHT``, ``SECONDS`` long, at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(playable_bytes())
    return path
