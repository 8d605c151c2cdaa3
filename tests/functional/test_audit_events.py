"""Session, security and admin events (issue 15): each produced by a real request, recorded once,
with the client's address, chained, and never carrying a password."""

from __future__ import annotations

from pathlib import Path

from ccgateway import retcodes
from ccgateway.audit.events import Kind
from ccgateway.node.clock import ManualClock
from ccgateway.stores.schema import open_engine
from tests.audit_recording import MemoryRecorder, assert_chained, scenario, store
from tests.conftest import PASSWORD, GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0, REC1, write_random
from tests.functional.test_admin_and_events import TOKEN, admin

LOOPBACK = "127.0.0.1"


async def started(
    make_gateway: GatewayFactory, **overrides: str
) -> tuple[RunningGateway, MemoryRecorder]:
    recorder = MemoryRecorder()
    gw = await make_gateway(recorder=recorder, ADMIN_TOKEN=TOKEN, **overrides)
    for work_no in (101, 102):
        await gw.add_agent(work_no)  # the directory itself: no admin event
    return gw, recorder


async def test_sign_in_forced_sign_in_and_sign_out_are_session_events(
    make_gateway: GatewayFactory,
) -> None:
    gw, recorder = await started(make_gateway)
    guid, body = await gw.client.sign_in(101)
    assert body["retcode"] == "0"
    _, body = await gw.client.sign_in(101)  # already signed in: refused, no event
    assert body["retcode"] == retcodes.ALREADY_SIGNED_IN.code
    guid, body = await gw.client.sign_in(101, force=True)
    assert body["retcode"] == "0"
    response, body = await gw.client.call("DELETE", "onlineagent/101/logout", guid=guid)
    assert body["retcode"] == "0", body
    guid, _ = await gw.client.sign_in(102)
    _, body = await gw.client.call("DELETE", "onlineagent/102/forcelogout", guid=guid)
    assert body["retcode"] == "0", body
    assert [(e.name, e.agent_id) for e in recorder.events] == [
        ("sign_in", 101),
        ("forced_sign_in", 101),
        ("sign_out", 101),
        ("sign_in", 102),
        ("sign_out", 102),
    ]
    assert all(e.kind is Kind.SESSION and e.client == LOOPBACK for e in recorder.events)
    assert_chained(recorder.events)


async def test_a_trusted_proxy_names_the_agent_in_a_sign_in_event(
    make_gateway: GatewayFactory,
) -> None:
    gw, recorder = await started(make_gateway, TRUSTED_PROXIES="127.0.0.1/32")
    body = {"password": PASSWORD, "phonenum": "7101"}
    headers = {"X-Forwarded-For": "203.0.113.9"}
    _, answer = await gw.client.call("PUT", "onlineagent/101", json=body, headers=headers)
    assert answer["retcode"] == "0"
    (event,) = recorder.named(Kind.SESSION, "sign_in")
    assert event.client == "203.0.113.9"


async def test_failed_sign_ins_and_the_lockout_they_start_are_security_events(
    make_gateway: GatewayFactory,
) -> None:
    gw, recorder = await started(make_gateway, SIGNIN_LOCKOUT_ATTEMPTS="3")
    secret_guesses = ["guess-one-xyz", "guess-two-xyz", "guess-three-xyz"]
    answers = []
    for guess in secret_guesses:
        answers.append((await gw.client.sign_in(101, guess))[1]["retcode"])
    answers.append((await gw.client.sign_in(555, "guess-unknown-xyz"))[1]["retcode"])
    answers.append((await gw.client.sign_in(101, PASSWORD))[1]["retcode"])  # locked: no event
    wrong, locked = retcodes.WRONG_PASSWORD.code, retcodes.AGENT_LOCKED.code
    assert answers == [wrong, wrong, locked, wrong, locked]
    assert [(e.name, e.agent_id) for e in recorder.events] == [
        ("sign_in_failed", 101),
        ("sign_in_failed", 101),
        ("sign_in_failed", 101),
        ("locked_out", 101),
        ("sign_in_failed", 555),  # an unknown work number, as given
    ]
    assert all(e.kind is Kind.SECURITY and e.client == LOOPBACK for e in recorder.events)
    locked_out = recorder.events[3]
    assert locked_out.fields["failures"] == 3
    assert locked_out.fields["untilMs"] == locked_out_until(gw)
    every_byte = b"".join(e.canonical() for e in recorder.events)
    for password in [*secret_guesses, "guess-unknown-xyz", PASSWORD]:
        assert password.encode() not in every_byte


def locked_out_until(gw: RunningGateway) -> int:
    return gw.clock.now_ms() + gw.gateway.settings.signin_lockout_s * 1000


async def test_idle_sign_outs_by_a_request_and_by_the_sweeper(make_gateway: GatewayFactory) -> None:
    clock = ManualClock()
    recorder = MemoryRecorder()
    gw = await make_gateway(clock=clock, recorder=recorder)
    await gw.add_agent(101)
    await gw.add_agent(102)
    guid_101, _ = await gw.client.sign_in(101)
    await gw.client.sign_in(102)
    clock.advance(gw.gateway.settings.agent_idle_timeout_ms + 1)
    _, body = await gw.client.poll(101, guid_101)  # finds the session idle: signs it out
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    assert await gw.gateway.sessions.sign_out_idle() == [102]  # the sweeper (no request)
    assert [(e.name, e.agent_id) for e in recorder.events[2:]] == [
        ("idle_sign_out", 101),
        ("idle_sign_out", 102),
    ]
    assert_chained(recorder.events)


async def test_the_admin_sign_out_is_an_admin_and_a_session_event(
    make_gateway: GatewayFactory,
) -> None:
    gw, recorder = await started(make_gateway)
    await gw.client.sign_in(101)
    status, body = await admin(gw, "POST", "agents/101/signout")
    assert (status, body["result"]) == (200, {"workNo": 101, "sessionEnded": True})
    status, body = await admin(gw, "POST", "agents/102/signout")  # signed in nowhere
    assert (status, body["result"]) == (200, {"workNo": 102, "sessionEnded": False})
    status, _ = await admin(gw, "POST", "agents/999/signout")  # no such agent: no event
    assert status == 404
    assert [(e.kind, e.name, e.agent_id) for e in recorder.events[1:]] == [
        (Kind.ADMIN, "agent_signed_out", 101),
        (Kind.SESSION, "ended_by_admin", 101),
        (Kind.ADMIN, "agent_signed_out", 102),
    ]
    assert all(e.client == LOOPBACK for e in recorder.events)


async def test_a_directory_change_ends_the_session_at_its_next_request(
    make_gateway: GatewayFactory,
) -> None:
    gw, recorder = await started(make_gateway)
    guid, _ = await gw.client.sign_in(101)
    await gw.gateway.sessions.set_password(101, "a-new-password")
    _, body = await gw.client.poll(101, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    assert [(e.kind, e.name, e.agent_id) for e in recorder.events] == [
        (Kind.SESSION, "sign_in", 101),
        (Kind.ADMIN, "password_changed", 101),
        (Kind.SESSION, "ended_by_directory", 101),
    ]
    assert b"a-new-password" not in recorder.events[1].canonical()


async def test_unlock_through_the_admin_api_is_an_admin_event(make_gateway: GatewayFactory) -> None:
    gw, recorder = await started(make_gateway, SIGNIN_LOCKOUT_ATTEMPTS="2")
    for _ in range(2):
        await gw.client.sign_in(101, "guess")
    status, body = await admin(gw, "POST", "agents/101/unlock")
    assert body["result"] == {"workNo": 101, "wasLocked": True}
    status, body = await admin(gw, "POST", "agents/101/unlock")
    assert body["result"] == {"workNo": 101, "wasLocked": False}
    unlocks = recorder.named(Kind.ADMIN, "agent_unlocked")
    assert [(e.agent_id, e.client, e.fields) for e in unlocks] == [
        (101, LOOPBACK, {"wasLocked": True}),
        (101, LOOPBACK, {"wasLocked": False}),
    ]


async def test_registrations_and_removals_through_the_admin_api_are_admin_events(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    root = tmp_path / "drive"
    (root / "1/0/20201202/101").mkdir(parents=True)
    gw, recorder = await started(make_gateway, RECORD_DRIVE_MAP=f"Y:={root}")
    hd = write_random(tmp_path / "hd.mp4", 1000)
    for record_id in (REC0, REC1):
        status, body = await admin(
            gw,
            "POST",
            "recordings",
            {
                "conferenceId": CONF,
                "recordId": record_id,
                "participants": [101],
                "vdn": 1,
                "files": {"hd": str(hd), "sd": str(hd)},
            },
        )
        assert status == 200, body
    status, body = await admin(
        gw,
        "POST",
        "file-recordings",
        {"recordId": "f1", "fileName": "Y:/1/0/20201202/101/1.mp4", "callId": "1-2"},
    )
    assert status == 200, body
    assert (await admin(gw, "DELETE", f"recordings/{REC1}"))[0] == 200
    assert (await admin(gw, "DELETE", "recordings/no-such"))[0] == 404  # no event
    assert (await admin(gw, "DELETE", f"conferences/{CONF}"))[0] == 200
    assert (await admin(gw, "DELETE", f"conferences/{CONF}"))[0] == 404  # no event
    shown = [(e.name, e.agent_id, dict(e.concerns)) for e in recorder.events]
    assert shown == [
        ("register_recording", None, {"conference": CONF, "record": REC0}),
        ("register_recording", None, {"conference": CONF, "record": REC1}),
        (
            "register_file_recording",
            101,
            {"record": "f1", "path": "Y:/1/0/20201202/101/1.mp4"},
        ),
        ("remove_recording", None, {"record": REC1}),
        ("remove_conference", None, {"conference": CONF}),
    ]
    assert recorder.events[0].fields == {"fileTypes": [0, 1], "vdn": 1}
    assert all(e.kind is Kind.ADMIN and e.client == LOOPBACK for e in recorder.events)
    assert_chained(recorder.events)


async def test_the_admin_api_reads_the_trail(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ADMIN_TOKEN=TOKEN)
    engine = await open_engine(gw.gateway.settings.database_url)
    try:
        await store(engine, scenario().events)
    finally:
        await engine.dispose()
    status, body = await admin(gw, "GET", "audit?agent=101&kind=download")
    assert status == 200, body
    assert [(x["writer"], x["seq"], x["outcome"]) for x in body["result"]] == [
        ("gw_0@2", 2, "open"),
        ("gw_0@1", 7, "interrupted"),
        ("gw_0@1", 2, "completed"),
    ]
    assert body["result"][2]["end"]["fields"]["bytes"] == 1000
    assert body["result"][2]["fields"]["interface"] == "downloadRecordFile"
    status, body = await admin(gw, "GET", "audit?outcome=open&limit=2")
    assert [(x["writer"], x["seq"]) for x in body["result"]] == [("gw_0@2", 2), ("gwx0@1", 7)]
    status, body = await admin(gw, "GET", "audit?kind=head&events=1")
    assert [(x["seq"], x["name"], x["prev"] != "") for x in body["result"]] == [
        (6, "end", True),
        (5, "start", True),
    ]
    status, body = await admin(gw, "GET", f"audit?conference=conf-2&since={1_700_000_000_000}")
    assert [x["seq"] for x in body["result"]] == [3]
    for bad in ("kind=downloads", "outcome=head", "events=yes", "since=-1", "limit=0"):
        status, body = await admin(gw, "GET", f"audit?{bad}")
        assert (status, body["retcode"]) == (400, retcodes.ADMIN_BAD_REQUEST.code), bad
