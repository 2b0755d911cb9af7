"""Fault injection for tests, loaded only by worker subprocesses started with tests/hooks on PYTHONPATH.

SENTQ_TEST_POISON="raise:TEXT" makes scoring raise on any batch holding TEXT; "kill:TEXT" makes the process holding
such a batch SIGKILL itself (as an out-of-memory kill would). SENTQ_TEST_SLOW="SECONDS" makes every scoring call
sleep that long first, so a chunk is held long enough to act on it (drain a worker mid-chunk). Nothing of this
ships in the sentq package.
"""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("SENTQ_TEST_POISON", "")
if _spec:
    _how, _, _marker = _spec.partition(":")
    from sentq import model as _model

    _real = _model.SentimentModel.predict_proba

    def _poisoned(self, texts):  # type: ignore[no-untyped-def]
        if _marker in texts:
            if _how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"poisoned text {_marker!r}")
        return _real(self, texts)

    _model.SentimentModel.predict_proba = _poisoned  # type: ignore[method-assign]

_slow = float(os.environ.get("SENTQ_TEST_SLOW", "0") or 0)
if _slow > 0:
    import time

    from sentq import model as _slow_model

    _unslowed = _slow_model.SentimentModel.predict_proba

    def _slowed(self, texts):  # type: ignore[no-untyped-def]
        time.sleep(_slow)
        return _unslowed(self, texts)

    _slow_model.SentimentModel.predict_proba = _slowed  # type: ignore[method-assign]
