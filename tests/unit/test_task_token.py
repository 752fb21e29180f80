import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmo_server.api._task_token import TaskTokens, decode_task_token, encode_task_token
from cmo_server.domain import DEFAULT_NAMESPACE, Namespace, TaskRef
from cmo_server.errors import InvalidArgument

IDS = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=128)
INTS = st.integers(min_value=1, max_value=2**31 - 1)


PARTS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,62}", fullmatch=True)


@given(PARTS, PARTS, IDS, st.integers(min_value=0, max_value=2**31 - 1), INTS, IDS, IDS, INTS)
def test_a_token_names_what_it_was_made_from(tenant, project, run_id, step, attempt, node_id, graph_id, version):
    ref = TaskRef(Namespace(tenant, project), run_id, step, attempt, node_id, graph_id, version)
    token = encode_task_token(ref)
    assert token.isascii()
    assert token.isprintable()
    assert " " not in token
    assert decode_task_token("task_token", token) == ref


def _forge(body: bytes) -> str:
    return "t1." + base64.urlsafe_b64encode(body).decode().rstrip("=")


@pytest.mark.parametrize(
    ("token", "field"),
    [
        ("", "task_token"),
        ("x", "task_token"),
        ("t1.!!!", "task_token"),
        ("t2." + encode_task_token(TaskRef(DEFAULT_NAMESPACE, "r", 0, 1, "n", "g", 1))[3:], "task_token"),
        (_forge(b"{}"), "task_token"),
        (_forge(b'["default","default","r",0,1,"n","g"]'), "task_token"),
        (_forge(b'["default","default","r","0",1,"n","g",1]'), "task_token"),
        (_forge(b'["default","default","r",0,true,"n","g",1]'), "task_token"),
        (_forge(b'["default","default","r\\u0000",0,1,"n","g",1]'), "task_token.run_id"),
        (_forge(b'["default","default","r",-1,1,"n","g",1]'), "task_token.step_index"),
        (_forge(b'["default","default","r",0,0,"n","g",1]'), "task_token.attempt"),
        (_forge(b'["default","default","r",0,1,"","g",1]'), "task_token.node_id"),
        (_forge(b'["default","default","r",0,1,"n","g",0]'), "task_token.graph_version"),
        (_forge(b'["Acme","default","r",0,1,"n","g",1]'), "task_token.namespace.tenant"),
        (_forge(b'["default","a/b","r",0,1,"n","g",1]'), "task_token.namespace.project"),
        ("t1." + "A" * 5000, "task_token"),
    ],
)
def test_a_token_this_server_did_not_issue_is_refused_naming_the_field(token, field):
    with pytest.raises(InvalidArgument) as refused:
        decode_task_token("task_token", token)
    assert refused.value.field == field
    assert len(str(refused.value)) < 200


def test_issued_tokens_are_remembered_within_a_bound_and_others_still_decoded():
    tokens = TaskTokens(size=2)
    refs = [TaskRef(DEFAULT_NAMESPACE, f"r{i}", 0, 1, "n", "g", 1) for i in range(3)]
    issued = [tokens.encode(ref) for ref in refs]
    assert issued == [encode_task_token(ref) for ref in refs]  # the same tokens as the pure encoder
    assert [tokens.decode("task_token", t) for t in issued] == refs  # the oldest one is decoded again
    assert len(tokens._issued) == 2
    with pytest.raises(InvalidArgument) as refused:
        tokens.decode("task_token", "t1.nonsense")
    assert refused.value.field == "task_token"
