"""worker_main: bad input found in a worker is reported as a usage error, not a traceback."""

from __future__ import annotations

import multiprocessing

from squall.engine.worker import worker_main
from squall.plan.load import Closed
from squall.plan.plan import Plan
from squall.plan.shard import Spread
from squall.plan.specs import PySpec, RequestSpec
from squall.wire import Failed, decode


def test_a_plan_error_in_a_worker_is_sent_as_a_usage_failure() -> None:
    plan = Plan(
        RequestSpec("http://127.0.0.1:1/"),
        load=Closed(connections=1),
        spread=Spread(workers=1),
        py=PySpec("nope"),
    )
    ctx = multiprocessing.get_context("fork")
    data_r, data_w = ctx.Pipe(duplex=False)
    ctl_r, _ctl_w = ctx.Pipe(duplex=False)  # (kept open: the worker reads its end)
    proc = ctx.Process(target=worker_main, args=(plan, 0, data_w, ctl_r))
    proc.start()
    try:
        assert data_r.poll(20), "the worker sent nothing"
        msg = decode(data_r.recv_bytes())
    finally:
        proc.join(20)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == 1
    assert isinstance(msg, Failed)
    want = "'nope' is not MODULE:FACTORY, e.g. examples.agent_sdk:workload"
    assert (msg.error, msg.usage) == (want, True)
