"""The stress CLI rejects every malformed argument before starting a chain, naming the argument,
the value and the allowed range (exit code 2, nothing written)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballast.cli import main
from ballast.errors import ValidationError
from ballast.stress import StressOptions

# argument -> (StressOptions field, strategy of invalid values)
INVALID = {
    "--accounts": ("accounts", st.one_of(st.integers(max_value=0), st.integers(min_value=5_001))),
    "--seed": ("seed", st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32, max_value=2**40))),
    "--anticipatory": ("anticipatory_share", st.one_of(st.floats(max_value=-1e-9, allow_nan=False,
                                                                 allow_infinity=False),
                                                       st.floats(min_value=1.000001, max_value=1e9))),
    "--liquidators": ("liquidators", st.one_of(st.integers(max_value=0), st.integers(min_value=51))),
    "--liquidator-latency": ("liquidator_latency", st.one_of(st.integers(max_value=-1), st.integers(min_value=21))),
    "--workers": ("workers", st.one_of(st.integers(max_value=0), st.integers(min_value=4))),
    "--rpc-drop-rate": ("rpc_drop_rate", st.floats(min_value=0.5, max_value=1e6)),
    "--chain-salt": ("chain_salt", st.one_of(st.integers(max_value=-1), st.integers(min_value=1_001))),
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(INVALID)), st.data())
def test_one_bad_option_is_named_with_its_value(arg: str, data: st.DataObject) -> None:
    field, strat = INVALID[arg]
    value = data.draw(strat)
    with pytest.raises(ValidationError) as info:
        StressOptions(**{field: value}).validate()
    assert info.value.field == arg
    assert str(value) in str(info.value)


def test_valid_defaults_pass() -> None:
    assert StressOptions().validate() == StressOptions()


@pytest.mark.parametrize("argv, needle", [
    (["stress", "--accounts", "0"], "--accounts"),
    (["stress", "--accounts", "6000"], "--accounts"),
    (["stress", "--keeper-down", "abc"], "--keeper-down"),
    (["stress", "--keeper-down", "5:0"], "--keeper-down"),
    (["stress", "--chain-salt", "-3"], "--chain-salt"),
    (["stress", "--scenario", "no_such_scenario", "--accounts", "2"], "no_such_scenario"),
])
def test_cli_exits_2_with_a_clear_message(argv: list[str], needle: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err
    assert not out.exists()
