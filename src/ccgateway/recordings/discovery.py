"""Discovering a conference's recordings from its recording server's listing (our format).

A conference may be registered with only a base URL on the MCU's recording server, e.g.
``http://mcu.example:8080/recordings/<conferenceId>/``. Its recordings are then found in the
listing ``<base>index.json`` (the base URL always ends with ``/``), a JSON document of this
shape, defined by ccgateway, not by the CC-Gateway or any MCU:

.. code-block:: json

    {
      "format": "ccgateway-recordings/1",
      "recordings": [
        {"recordId": "rec-1", "files": {"hd": "rec-1-hd.mp4", "sd": "rec-1-sd.mp4"}},
        {"recordId": "rec-2", "files": {"hd": "https://cdn.example/rec-2.mp4", "aux": "r2.mp4"}}
      ]
    }

- ``format`` must be ``ccgateway-recordings/1``; ``recordings`` are in recording order.
- ``recordId``: 1-64 letters, digits, ``.``, ``_``, ``:`` or ``-`` (as everywhere).
- ``files`` maps ``hd`` / ``sd`` / ``aux`` (FileType 0 / 1 / 2) to a file name relative to the
  base URL or to an absolute http(s):// URL; at least one file per recording.
- Anything else in the document is ignored. A listing over 1 MiB is refused.

``discover`` fetches and checks the listing through the gateway's ``Sources`` and returns
one ``Registration`` per recording, for ``Catalog.register`` (which digests each file once).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ccgateway.recordings.catalog import CatalogError, Registration, is_id
from ccgateway.sources import Sources
from ccgateway.sources.base import SourceError, redact
from ccgateway.stores.base import FileType

FORMAT = "ccgateway-recordings/1"
LISTING = "index.json"
MAX_LISTING_BYTES = 1024 * 1024
_TYPES = {"hd": FileType.HD, "sd": FileType.SD, "aux": FileType.AUX}


def listing_url(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CatalogError(f"{redact(base_url)!r}: the recording server is an http(s):// URL")
    return base_url.rstrip("/") + "/" + LISTING


async def fetch_listing(sources: Sources, base_url: str) -> Any:
    """The listing document at ``<base>/index.json`` (SourceError when it cannot be had)."""
    url = listing_url(base_url)
    body = await sources.fetch_document(url, MAX_LISTING_BYTES)
    name = redact(url)
    if len(body) > MAX_LISTING_BYTES:
        raise SourceError(f"{name}: the listing is over {MAX_LISTING_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{name}: not JSON: {exc}") from None


def parse_listing(
    document: Any, base_url: str, conference_id: str, participants: frozenset[int], **fields: Any
) -> list[Registration]:
    """Check a listing and turn it into registrations (``fields`` go into each Registration)."""
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        raise CatalogError(f'the listing must be a JSON object with "format": "{FORMAT}"')
    recordings = document.get("recordings")
    if not isinstance(recordings, list):
        raise CatalogError('the listing needs a "recordings" array')
    base = base_url.rstrip("/") + "/"
    found: list[Registration] = []
    seen: set[str] = set()
    for index, entry in enumerate(recordings):
        where = f"recordings[{index}]"
        if not isinstance(entry, Mapping):
            raise CatalogError(f"{where}: an object with recordId and files")
        record_id = entry.get("recordId")
        if not isinstance(record_id, str) or not is_id(record_id) or record_id in seen:
            raise CatalogError(f"{where}.recordId: a new id of 1-64 letters, digits, . _ : -")
        seen.add(record_id)
        files = entry.get("files")
        if not isinstance(files, Mapping) or not files:
            raise CatalogError(f"{where}.files: an object of hd/sd/aux file names")
        located: dict[FileType, str] = {}
        for key, value in files.items():
            if key not in _TYPES or not isinstance(value, str) or not value.strip():
                raise CatalogError(f"{where}.files.{key}: hd, sd or aux, with a file name")
            located[_TYPES[key]] = _resolve(base, value.strip(), f"{where}.files.{key}")
        found.append(Registration(conference_id, record_id, participants, located, **fields))
    return found


async def discover(
    sources: Sources,
    base_url: str,
    conference_id: str,
    participants: frozenset[int],
    **fields: Any,
) -> list[Registration]:
    """Fetch ``<base>/index.json`` and return its recordings as registrations."""
    document = await fetch_listing(sources, base_url)
    return parse_listing(document, base_url, conference_id, participants, **fields)


def _resolve(base: str, value: str, where: str) -> str:
    url = urllib.parse.urljoin(base, urllib.parse.quote(value, safe="/:?=&%~+@!$,;"))
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise CatalogError(f"{where}: a name relative to the base URL or an http(s):// URL")
    return url
