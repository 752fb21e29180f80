"""assert_eventually hands back what its check found, typed as the check's value (assert_type is for mypy)."""

from __future__ import annotations

from typing import assert_type

import pytest

from tests.support.waiting import assert_eventually


async def test_an_async_check_gives_back_its_awaited_value_once_there_is_one() -> None:
    answers = iter([None, None, "ready"])

    async def check() -> str | None:
        return next(answers)

    found = await assert_eventually(check, interval=0)
    assert_type(found, str)
    assert found == "ready"


async def test_a_sync_check_gives_back_its_first_truthy_value() -> None:
    answers = iter([0, 0, 3])
    found = await assert_eventually(lambda: next(answers), interval=0)
    assert_type(found, int)
    assert found == 3


async def test_a_check_that_never_holds_fails_naming_what_and_the_last_reason() -> None:
    def check() -> bool:
        raise AssertionError("still 2 runs")

    with pytest.raises(AssertionError, match=r"the runs to end still not true after 0s: still 2 runs"):
        await assert_eventually(check, timeout=0, what="the runs to end")
