"""The JSON shape of an audit record that the admin API answers and the CLI prints (``--json``)."""

from __future__ import annotations

from typing import Any

from ccgateway.stores.base import AuditRecord


def audit_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "time": record.time_ms,
        "node": record.node,
        "interface": record.interface,
        "agentId": record.agent_id,
        "conferenceId": record.conference_id,
        "recordId": record.record_id,
        "fileType": record.file_type,
        "range": record.range,
        "status": record.status,
        "bytesSent": record.bytes_sent,
        "outcome": record.outcome,
        "retcode": record.retcode,
        "client": record.client,
        "durationMs": record.duration_ms,
    }
