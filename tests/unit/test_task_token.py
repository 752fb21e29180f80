import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmo_server.api._task_token import decode_task_token, encode_task_token
from cmo_server.domain import TaskRef
from cmo_server.errors import InvalidArgument

IDS = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=128)
INTS = st.integers(min_value=1, max_value=2**31 - 1)


@given(IDS, st.integers(min_value=0, max_value=2**31 - 1), INTS, IDS, IDS, INTS)
def test_a_token_names_what_it_was_made_from(run_id, step, attempt, node_id, graph_id, version):
    ref = TaskRef(run_id, step, attempt, node_id, graph_id, version)
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
        ("t2." + encode_task_token(TaskRef("r", 0, 1, "n", "g", 1))[3:], "task_token"),
        (_forge(b"{}"), "task_token"),
        (_forge(b'["r",0,1,"n","g"]'), "task_token"),
        (_forge(b'["r","0",1,"n","g",1]'), "task_token"),
        (_forge(b'["r",0,true,"n","g",1]'), "task_token"),
        (_forge(b'["r\\u0000",0,1,"n","g",1]'), "task_token.run_id"),
        (_forge(b'["r",-1,1,"n","g",1]'), "task_token.step_index"),
        (_forge(b'["r",0,0,"n","g",1]'), "task_token.attempt"),
        (_forge(b'["r",0,1,"","g",1]'), "task_token.node_id"),
        (_forge(b'["r",0,1,"n","g",0]'), "task_token.graph_version"),
        ("t1." + "A" * 5000, "task_token"),
    ],
)
def test_a_token_this_server_did_not_issue_is_refused_naming_the_field(token, field):
    with pytest.raises(InvalidArgument) as refused:
        decode_task_token("task_token", token)
    assert refused.value.field == field
    assert len(str(refused.value)) < 200
