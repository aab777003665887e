"""Rpc.batch splits large batches and fails loudly when a node rejects one (no network needed)."""
from __future__ import annotations

from typing import Any

import pytest

from ballast.chain import Rpc
from ballast.errors import ChainError


class _Recorder(Rpc):
    def __init__(self, reject: bool = False) -> None:
        super().__init__("http://127.0.0.1:1")
        self.posts: list[int] = []
        self.reject = reject

    def _post(self, payload: Any) -> Any:
        self.posts.append(len(payload))
        if self.reject:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "request too large"}}
        # answer out of order, one error among them, as nodes may
        out = [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]} for r in reversed(payload)]
        out[0] = {"jsonrpc": "2.0", "id": payload[-1]["id"], "error": {"code": 3, "message": "reverted"}}
        return out


def test_batch_is_split_and_keeps_order() -> None:
    rpc = _Recorder()
    n = 2 * Rpc.MAX_BATCH + 7
    res = rpc.batch(("eth_x", [i]) for i in range(n))
    assert rpc.posts == [Rpc.MAX_BATCH, Rpc.MAX_BATCH, 7]
    assert len(res) == n
    # the last request of every chunk got the error; everything else its own answer, in order
    for i, r in enumerate(res):
        last_of_chunk = (i % Rpc.MAX_BATCH == Rpc.MAX_BATCH - 1) or i == n - 1
        assert r == ({"error": {"code": 3, "message": "reverted"}} if last_of_chunk else i)


def test_rejected_batch_raises() -> None:
    rpc = _Recorder(reject=True)
    with pytest.raises(ChainError, match="request too large"):
        rpc.batch([("eth_x", [1]), ("eth_x", [2])])


def test_empty_batch_posts_nothing() -> None:
    rpc = _Recorder()
    assert rpc.batch([]) == []
    assert rpc.posts == []
