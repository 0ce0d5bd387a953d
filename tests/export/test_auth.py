"""Token checks: constant-time, Bearer or query token, which token opens what."""

from __future__ import annotations

from streams.export.auth import Tokens, bearer, matches


def test_matches_any_configured_token_exactly() -> None:
    assert matches("abc", ["abc"])
    assert matches("abc", [None, "abc"])
    assert not matches("abc", [None])
    assert not matches("abc ", ["abc"]) and not matches("ABC", ["abc"])
    assert not matches(None, ["abc"]) and not matches("", [""])
    assert matches("密码", ["密码"]) and not matches("密", ["密码"])


def test_bearer_header_parsing() -> None:
    assert bearer({"Authorization": "Bearer t0k"}) == "t0k"
    assert bearer({"Authorization": "bearer t0k"}) == "t0k"
    assert bearer({"Authorization": "Basic dXNlcg=="}) is None
    assert bearer({}) is None


def test_which_tokens_open_reads() -> None:
    t = Tokens(api="A", read="R", metrics="M", wallboard="W")
    assert t.readers() == ["R", "A"] and t.board_readers() == ["R", "A", "W"]
    assert Tokens(wallboard="W").board_readers() == ["W"]
    assert Tokens(api="A").readers() == []  # no read token: reads are open
