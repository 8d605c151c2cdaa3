"""A Python client for CC-Gateway agents: sign in, stay signed in, events, verified downloads.

::

    from ccgateway.client import AgentClient, FileType, VideoFile

    async with AgentClient("https://gw:8043", 101, password, ca="cert.pem") as agent:
        result = await agent.download(VideoFile(conference_id, file_type=FileType.HD), "hd.mp4")
        async for event in agent.events():
            ...

:class:`SyncAgentClient` is the same client for code that is not async. The list below is the
whole public API (``tests/unit/test_client_api.py`` holds it to that).
"""

from ccgateway.client._agent import AgentClient
from ccgateway.client._download import DownloadResult, Progress, RetryPolicy
from ccgateway.client._errors import (
    CertificateError,
    ClientError,
    ProtocolError,
    RefusedError,
    SignedOutError,
    TransportError,
    VerificationError,
)
from ccgateway.client._events import AgentEvent
from ccgateway.client._progress import TerminalProgress
from ccgateway.client._sync import SyncAgentClient
from ccgateway.client._targets import FileType, RecordFile, Target, VideoFile, VideoFileEx

__all__ = [
    "AgentClient",
    "AgentEvent",
    "CertificateError",
    "ClientError",
    "DownloadResult",
    "FileType",
    "Progress",
    "ProtocolError",
    "RecordFile",
    "RefusedError",
    "RetryPolicy",
    "SignedOutError",
    "SyncAgentClient",
    "Target",
    "TerminalProgress",
    "TransportError",
    "VerificationError",
    "VideoFile",
    "VideoFileEx",
]
