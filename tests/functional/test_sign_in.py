"""Sign-in, force sign-in, sign-out and updateGuid over real HTTP, as agent desktops call them."""

from __future__ import annotations

import asyncio

from ccgateway import retcodes
from tests.conftest import PASSWORD, GatewayFactory, RunningGateway, guid_of


async def test_sign_in_answers_documented_result_and_set_guid(gw: RunningGateway) -> None:
    guid, body = await gw.client.sign_in(101)
    assert body["retcode"] == "0"
    assert guid is not None and guid.endswith(".AgentGateway0")
    result = body["result"]
    assert result["workno"] == "101"
    assert result["vdnid"] == 1
    assert result["serverName"] == "AgentGateway"
    assert result["mediatype"] == "TTF"
    assert result["loginTime"] == str(gw.clock.now_ms())
    assert result["isForceChange"] == "false"


async def test_sign_in_response_is_json_envelope(gw: RunningGateway) -> None:
    response, body = await gw.client.call(
        "PUT", "onlineagent/101", json={"password": PASSWORD, "phonenum": "7101"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert set(body) == {"message", "retcode", "result"}


async def test_fields_as_strings_or_json_types_are_both_accepted(gw: RunningGateway) -> None:
    guid, body = await gw.client.sign_in(
        101, status="4", agenttype="11", releasephone="false", autoanswer=True, checkInWebm="false"
    )
    assert body["retcode"] == "0" and guid
    assert body["result"]["mediatype"] == "TFF"
    guid, body = await gw.client.sign_in(102, status=5, agenttype=4, releasephone=False)
    assert body["retcode"] == "0" and guid


async def test_sign_in_while_signed_in_is_refused_and_forcelogin_replaces(
    gw: RunningGateway,
) -> None:
    first, _ = await gw.client.sign_in(101)
    again, body = await gw.client.sign_in(101)
    assert body["retcode"] == retcodes.ALREADY_SIGNED_IN.code and again is None
    forced, body = await gw.client.sign_in(101, force=True)
    assert body["retcode"] == "0" and forced and forced != first
    response, body = await gw.client.poll(101, first)
    assert body["retcode"] == retcodes.NO_RIGHT.code
    response, body = await gw.client.poll(101, forced)
    assert body["retcode"] == "0" and body["event"]["eventType"] == "AgentOther_InService"


async def test_forcelogin_signs_in_an_agent_that_was_not_signed_in(gw: RunningGateway) -> None:
    guid, body = await gw.client.sign_in(102, force=True)
    assert body["retcode"] == "0" and guid


async def test_wrong_password_and_unknown_agent_answer_alike(gw: RunningGateway) -> None:
    _, wrong = await gw.client.sign_in(101, "not-it")
    _, unknown = await gw.client.sign_in(555, PASSWORD)
    assert wrong == unknown
    assert wrong["retcode"] == retcodes.WRONG_PASSWORD.code


async def test_two_concurrent_sign_ins_exactly_one_wins(gw: RunningGateway) -> None:
    results = await asyncio.gather(*(gw.client.sign_in(101) for _ in range(6)))
    codes = sorted(body["retcode"] for _, body in results)
    assert codes == ["0"] + [retcodes.ALREADY_SIGNED_IN.code] * 5
    winner = next(guid for guid, body in results if body["retcode"] == "0")
    _, body = await gw.client.poll(101, winner)
    assert body["retcode"] == "0"


async def test_bad_sign_in_fields(gw: RunningGateway) -> None:
    cases = [
        ({"password": PASSWORD}, retcodes.SIGN_IN_PARAMETER_INVALID),
        ({"phonenum": "7101"}, retcodes.SIGN_IN_PARAMETER_INVALID),
        ({"password": PASSWORD, "phonenum": ""}, retcodes.SIGN_IN_PARAMETER_INVALID),
        ({"password": PASSWORD, "phonenum": "7" * 25}, retcodes.SIGN_IN_PARAMETER_INVALID),
        ({"password": "x" * 33, "phonenum": "7101"}, retcodes.SIGN_IN_PARAMETER_INVALID),
        (
            {"password": PASSWORD, "phonenum": "7101", "status": 9},
            retcodes.SIGN_IN_PARAMETER_INVALID,
        ),
        (
            {"password": PASSWORD, "phonenum": "7101", "status": "idle"},
            retcodes.SIGN_IN_PARAMETER_INVALID,
        ),
        (
            {"password": PASSWORD, "phonenum": "7101", "autoanswer": "yes"},
            retcodes.SIGN_IN_PARAMETER_INVALID,
        ),
        ({"password": PASSWORD, "phonenum": "7101", "agenttype": 5}, retcodes.WRONG_AGENT_TYPE),
        ({"password": PASSWORD, "phonenum": "7101", "ip": "::1"}, retcodes.INVALID_IP),
        (
            {
                "password": PASSWORD,
                "phonenum": "7101",
                "callBackUri": "https://x/cb",
                "serviceToken": "t",
            },
            retcodes.SIGN_IN_PARAMETER_INVALID,
        ),
        ({"password": ["x"], "phonenum": "7101"}, retcodes.SIGN_IN_PARAMETER_INVALID),
    ]
    for fields, expected in cases:
        response, body = await gw.client.call("PUT", "onlineagent/101", json=fields)
        assert response.status == 200, fields
        assert body["retcode"] == expected.code, fields
    # none of the refused attempts signed the agent in
    guid, body = await gw.client.sign_in(101)
    assert body["retcode"] == "0" and guid


async def test_malformed_bodies_never_fail_the_server(gw: RunningGateway) -> None:
    bodies = [b"{", b"[1,2]", b"null", b'"text"', b"\xff\xfe", b"[" * 100_000, b"x" * 200_000]
    for raw in bodies:
        response, body = await gw.client.call(
            "PUT", "onlineagent/101", data=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status == 200, raw[:10]
        assert body["retcode"] == retcodes.BAD_INTERFACE_PARAMETER.code


async def test_agent_id_outside_range_or_not_a_number(gw: RunningGateway) -> None:
    for segment in ("100", "1000000", "abc", "0101x", "-101", "１０１", "99999999999999999999"):
        response, body = await gw.client.call(
            "PUT", f"onlineagent/{segment}", json={"password": PASSWORD, "phonenum": "7"}
        )
        assert response.status == 200, segment
        assert body["retcode"] == retcodes.BAD_INTERFACE_PARAMETER.code, segment


async def test_unknown_path_and_wrong_method(gw: RunningGateway) -> None:
    response, body = await gw.client.call("GET", "nosuch/101")
    assert response.status == 404
    assert body["retcode"] == retcodes.BAD_INTERFACE_PARAMETER.code
    response, body = await gw.client.call("POST", "onlineagent/101")
    assert response.status == 405
    assert response.headers["Allow"] == "PUT"
    assert body["retcode"] == retcodes.BAD_INTERFACE_PARAMETER.code
    response, body = await gw.client.call("DELETE", "agentevent/101")
    assert response.status == 405 and response.headers["Allow"] == "GET"
    response, _ = await gw.client.call("DELETE", "recordfile/101/videofiledownload")
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"


async def test_head_on_the_event_poll_takes_no_event(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(101)
    response, _ = await gw.client.call("HEAD", "agentevent/101", guid=guid)
    assert response.status == 405 and response.headers["Allow"] == "GET"
    _, body = await gw.client.poll(101, guid)
    assert body["event"]["eventType"] == "AgentOther_InService"  # still there for the GET


async def test_doubled_slash_of_the_js_sdk_is_served(gw: RunningGateway) -> None:
    response, body = await gw.client.call(
        "PUT", "/onlineagent/101", json={"password": PASSWORD, "phonenum": "7101"}
    )
    assert response.status == 200 and body["retcode"] == "0"
    guid = guid_of(response)
    response, body = await gw.client.call("GET", "/agentevent/101", guid=guid)
    assert body["retcode"] == "0" and body["event"]["eventType"] == "AgentOther_InService"


async def test_logout_then_guid_is_refused(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(101)
    response, body = await gw.client.call("DELETE", "onlineagent/101/logout", guid=guid)
    assert body["retcode"] == "0"
    _, body = await gw.client.poll(101, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    _, body = await gw.client.call("DELETE", "onlineagent/101/logout", guid=guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    guid, body = await gw.client.sign_in(101)
    assert body["retcode"] == "0"


async def test_forcelogout_signs_out(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(102)
    _, body = await gw.client.call("DELETE", "onlineagent/102/forcelogout", guid=guid)
    assert body["retcode"] == "0"
    _, body = await gw.client.poll(102, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code


async def test_logout_needs_the_agents_own_guid(gw: RunningGateway) -> None:
    guid_101, _ = await gw.client.sign_in(101)
    guid_102, _ = await gw.client.sign_in(102)
    _, body = await gw.client.call("DELETE", "onlineagent/101/logout", guid=guid_102)
    assert body["retcode"] == retcodes.NO_RIGHT.code
    _, body = await gw.client.call("DELETE", "onlineagent/101/logout")
    assert body["retcode"] == retcodes.NO_RIGHT.code
    _, body = await gw.client.poll(101, guid_101)
    assert body["retcode"] == "0"


async def test_update_guid_issues_a_new_guid_in_the_body(gw: RunningGateway) -> None:
    old, _ = await gw.client.sign_in(101)
    response, body = await gw.client.call("PUT", "onlineagent/101/updateGuid", guid=old)
    assert body["retcode"] == "0" and body["message"] == "success"
    new = body["result"]["guid"]
    assert new != old and new.endswith(".AgentGateway0")
    assert guid_of(response) == new
    _, body = await gw.client.poll(101, old)
    assert body["retcode"] == retcodes.NO_RIGHT.code
    _, body = await gw.client.poll(101, new)
    assert body["retcode"] == "0"


async def test_node_name_is_the_guid_suffix(make_gateway: GatewayFactory) -> None:
    running = await make_gateway(NODE_NAME="AgentGateway7")
    await running.add_agent(101)
    guid, body = await running.client.sign_in(101)
    assert guid is not None and guid.endswith(".AgentGateway7")
    assert body["result"]["serverName"] == "AgentGateway"
