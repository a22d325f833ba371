"""Behaviour of the Segment emulation: regulation progression and effects, profile lookups."""

from __future__ import annotations

import time

from sandbox_support import SEGMENT_TOKEN, Api, wait_for


def test_regulation_progresses_and_finally_removes_the_profile(sandbox, api: Api):
    sandbox.reset(regulation_seconds=0.9)
    person = sandbox.person("multi_stripe")
    bystander = sandbox.person("no_stripe")
    regulate_id = api.regulate([person["segment_user_id"]])
    seen = [api.regulation_status(regulate_id)]
    assert seen == ["INITIALIZED"]
    assert api.profile("email", person["email"]).status_code == 200  # nothing removed yet
    wait_for(lambda: seen.append(api.regulation_status(regulate_id)) or seen[-1] == "FINISHED", interval=0.02)
    assert "RUNNING" in seen and seen.index("RUNNING") < seen.index("FINISHED")
    lookups = {"user_id": person["segment_user_id"], "email": person["email"], "phone": person["phone"]}
    for id_type, value in lookups.items():
        assert api.profile(id_type, value).status_code == 404
    assert api.profile(None, person["segment_id"], "traits").status_code == 404
    assert api.profile("email", bystander["email"]).status_code == 200
    state = sandbox.state("multi_stripe")["segment"]
    assert state["profile_present"] is False
    assert state["regulations"] == [
        {"id": regulate_id, "regulationType": "SUPPRESS_WITH_DELETE", "overallStatus": "FINISHED"}
    ]


def test_flagged_people_make_regulations_fail_or_hang(sandbox, api: Api):
    sandbox.reset(regulation_seconds=0.3)
    failed = sandbox.person("segment_failed")
    stuck = sandbox.person("segment_stuck")
    failing_id = api.regulate([failed["segment_user_id"]])
    stuck_id = api.regulate([stuck["segment_user_id"]])
    wait_for(lambda: api.regulation_status(failing_id) == "FAILED")
    regulation = api.public("GET", f"/regulations/{failing_id}").json()["data"]["regulation"]
    errors = [d["errString"] for s in regulation["streamStatus"] for d in s["destinationStatus"]]
    assert any(errors) and regulation["finishedAt"]
    assert api.profile("user_id", failed["segment_user_id"]).status_code == 200
    time.sleep(0.4)
    assert api.regulation_status(stuck_id) == "RUNNING"
    assert api.profile("user_id", stuck["segment_user_id"]).status_code == 200


def test_suppression_without_delete_keeps_the_profile(sandbox, api: Api):
    sandbox.reset(regulation_seconds=0.2)
    person = sandbox.person("quiet_phone")
    regulate_id = api.regulate([person["segment_user_id"]], regulation_type="SUPPRESS_ONLY")
    wait_for(lambda: api.regulation_status(regulate_id) == "FINISHED")
    assert api.profile("user_id", person["segment_user_id"]).status_code == 200


def test_profile_lookups_are_case_sensitive_and_need_an_encoded_plus(sandbox, api: Api):
    person = sandbox.person("quiet_phone")
    assert api.profile("email", person["email"]).status_code == 200
    assert api.profile("email", person["email"].title()).status_code == 404
    assert api.profile("phone", person["phone"]).status_code == 200  # sent as %2B...
    raw_plus = f"/v1/spaces/{api.space_id}/collections/users/profiles/phone:{person['phone']}/external_ids"
    literal = api.http.get(f"{api.base_url}/segment/profiles{raw_plus}", auth=(SEGMENT_TOKEN, ""), timeout=10)
    assert literal.status_code == 404  # a literal "+" reads as a space
    assert api.profile("anonymous_id", person["anonymous_id"]).status_code == 200
    assert api.profile("nickname", "x").status_code == 404
    wrong_space = api.http.get(
        f"{api.base_url}/segment/profiles/v1/spaces/other/collections/users/profiles/user_id:x/traits",
        auth=(SEGMENT_TOKEN, ""),
        timeout=10,
    )
    assert wrong_space.status_code == 404


def test_external_ids_and_traits_page_with_cursors(sandbox, api: Api):
    person = sandbox.person("quiet_phone")
    collected, cursor = [], ""
    while True:
        params = {"limit": 1} | ({"next": cursor} if cursor else {})
        page = api.profile("user_id", person["segment_user_id"], params=params).json()
        collected += [(x["type"], x["id"]) for x in page["data"]]
        if not page["cursor"]["has_more"]:
            assert page["cursor"]["next"] == ""
            break
        cursor = page["cursor"]["next"]
    assert dict(collected) == {
        "user_id": person["segment_user_id"],
        "email": person["email"],
        "phone": person["phone"],
        "anonymous_id": person["anonymous_id"],
    }
    only_email = api.profile("user_id", person["segment_user_id"], params={"include": "email"}).json()
    assert [x["type"] for x in only_email["data"]] == ["email"]
    traits = api.profile("user_id", person["segment_user_id"], "traits", params={"limit": 2}).json()
    assert len(traits["traits"]) == 2 and traits["cursor"]["has_more"] is True
    verbose = api.profile("user_id", person["segment_user_id"], "traits", params={"verbose": "true"}).json()
    assert verbose["traits"]["email"]["value"] == person["email"]
