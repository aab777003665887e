"""Feed units (issue 13 item 6): feed answers are in feed decimals, not WAD; the Python helpers and
the JavaScript ones of @ballast/abi agree."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ballast.abi_export import ABI_DIR
from ballast.errors import ValidationError
from ballast.units import encode_feed_answer, feed_answer_to_wad, to_wad, wad_to_feed_answer

CASES = ["50000.5", "0.0002", "-0.01", "1", "20000000", "0.00000001"]


def test_encode_feed_answer() -> None:
    assert encode_feed_answer("50000.5") == 5_000_050_000_000
    assert encode_feed_answer(0.0002) == 20_000
    assert encode_feed_answer("-0.01") == -1_000_000
    assert feed_answer_to_wad(5_000_050_000_000) == 50_000_500_000_000_000_000_000
    assert wad_to_feed_answer(50_000_500_000_000_000_000_000) == 5_000_050_000_000
    assert to_wad("1.5") == 1_500_000_000_000_000_000
    with pytest.raises(ValidationError, match="at most 8 decimals"):
        encode_feed_answer("0.000000001")
    with pytest.raises(ValidationError, match="multiple of"):
        wad_to_feed_answer(1)
    assert wad_to_feed_answer(-15_000_000_000, exact=False) == -1


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_helpers_agree() -> None:
    script = (f'import("{ABI_DIR / "dist" / "feeds.js"}").then(m => console.log(JSON.stringify('
              f'{json.dumps(CASES)}.map(v => [m.encodeFeedAnswer(v).toString(), m.toWad(v).toString()]))))')
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
    got = json.loads(out)
    assert got == [[str(encode_feed_answer(v)), str(to_wad(v))] for v in CASES]
