"""The command line fails with one clear line on bad settings."""

from __future__ import annotations

import pytest

from streams import cli


@pytest.mark.parametrize("command", [["worker"], ["demo"], ["simulate", "--duration", "0"]])
def test_a_bad_web_port_is_one_line_not_a_traceback(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEFU_WEB_PORT", "abc")
    monkeypatch.setenv("KEFU_BROKER", "kafka://127.0.0.1:1")
    assert cli.main(command) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "KEFU_WEB_PORT" in err and "abc" in err and "Traceback" not in err
