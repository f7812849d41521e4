"""The sensor workload (see workload.py) in Bytewax: an in-memory source of JSON readings,
keyed, parsed, folded into 10 s tumbling event-time windows with 1 s grace (the clock's wait),
one worker, batches of 1000. Prints one line: events/s of the dataflow run (input built
beforehand), peak RSS (which includes the input held in memory) and the checked window count.

    python bytewax_sensor.py --events 1000000 --keys 5
"""

import argparse
import json
import time
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from bytewax.testing import TestingSink, TestingSource, run_main

import workload

EPOCH = datetime.fromtimestamp(0, tz=timezone.utc)


def millis(dt):
    return (dt - EPOCH) // timedelta(milliseconds=1)


def build(readings, out):
    flow = Dataflow("sensors")
    up = op.input("in", flow, TestingSource(readings, batch_size=1000))
    parsed = op.map_value("parse", up, json.loads)
    # The watermark is the newest event time minus the wait; a constant "now" keeps system time
    # out of it, so windows close exactly as event time says.
    clock = EventClock(
        ts_getter=lambda r: EPOCH + timedelta(milliseconds=r["ts"]),
        wait_for_system_duration=timedelta(milliseconds=workload.GRACE_MS),
        now_getter=lambda: EPOCH,
        to_system_utc=lambda _: None,
    )
    windower = TumblingWindower(
        length=timedelta(milliseconds=workload.WINDOW_MS),
        align_to=EPOCH + timedelta(milliseconds=workload.T0),
    )

    def fold(acc, r):
        v = r["value"]
        acc[0] += 1
        acc[1] = min(acc[1], v)
        acc[2] = max(acc[2], v)
        acc[3] += v
        return acc

    def merge(a, b):
        return [a[0] + b[0], min(a[1], b[1]), max(a[2], b[2]), a[3] + b[3]]

    windows = fold_window(
        "windows", parsed, clock, windower, lambda: [0, float("inf"), float("-inf"), 0], fold, merge
    )
    op.output("out", windows.down, TestingSink(out))
    return flow


def main():
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--events", type=int, default=1_000_000)
    args.add_argument("--keys", type=int, default=5)
    o = args.parse_args()
    readings = [workload.reading(i, o.keys)[:2] for i in range(o.events)]
    out = []
    flow = build(readings, out)
    start = time.perf_counter()
    run_main(flow)
    seconds = time.perf_counter() - start
    rss = workload.peak_rss_kib()
    step = workload.WINDOW_MS
    emitted = [
        (key, workload.T0 + wid * step, workload.T0 + (wid + 1) * step, c, lo, hi, s / c)
        for key, (wid, (c, lo, hi, s)) in out
    ]
    closed = workload.check("bytewax", emitted, o.events, o.keys)
    workload.report(f"bytewax_{o.keys}_keys", o.events, seconds, len(emitted), closed, rss)


if __name__ == "__main__":
    main()
