"""The sensor workload shared by eddy's peer benchmarks, and the check of a run's windows.

Reading i (0 <= i < events) has key ``Sensor{i % keys}``, JSON value
``{"ts": T0 + i, "value": i % 101}`` and event time ``T0 + i`` ms: readings 1 ms apart. The
aggregation is a 10 s tumbling window per key with 1 s grace, emitting count, min, max and mean
of ``value`` once a window closes. This is the same input ``stream-bench``'s
``tumbling_10s_json_*_keys`` figures give eddy.

A run passes its check when every window it emitted equals the window computed here over all
readings (so no window closed early on a partial count), no window came out twice, and every
window that had closed by the end of the input (end + grace < last event time) came out. Windows
still open at the end (each key's last) may come out or not: engines that flush at end of input
emit them, engines that wait for later records do not.
"""

import json
import resource
import sys

T0 = 1_700_000_000_000
WINDOW_MS = 10_000
GRACE_MS = 1_000


def reading(i, keys):
    """(key, JSON value bytes, event time in ms) of reading i."""
    ts = T0 + i
    value = json.dumps({"ts": ts, "value": i % 101}, separators=(",", ":")).encode()
    return f"Sensor{i % keys}", value, ts


def expected_window(key, start, events, keys):
    """(count, min, max, mean) of the readings of `key` in the window starting at `start`, or
    None when it holds none."""
    if not key.startswith("Sensor") or not key[6:].isdigit() or int(key[6:]) >= keys:
        return None
    first = max(start - T0, 0)
    first += (int(key[6:]) - first) % keys
    values = [i % 101 for i in range(first, min(start + WINDOW_MS - T0, events), keys)]
    if not values:
        return None
    return len(values), min(values), max(values), sum(values) / len(values)


def closed_windows(events, keys):
    """How many (key, window) pairs closed by the end of the input: end + grace < last time."""
    last_ts = T0 + events - 1
    closed = 0
    start = T0 - T0 % WINDOW_MS
    while start + WINDOW_MS + GRACE_MS < last_ts:
        readings = min(start + WINDOW_MS - T0, events) - max(start - T0, 0)
        closed += min(keys, readings)
        start += WINDOW_MS
    return closed


def check(name, emitted, events, keys):
    """Checks `emitted`, a list of (key, start, end, count, min, max, mean), and returns how
    many windows had closed by the end of the input. Exits with a message naming the first wrong
    window otherwise."""
    last_ts = T0 + events - 1
    seen = set()
    closed_seen = 0
    for key, start, end, count, lo, hi, mean in emitted:
        where = f"{name}: window {key} [{start}, {end})"
        if (key, start) in seen:
            fail(f"{where} came out twice")
        seen.add((key, start))
        want = expected_window(key, start, events, keys)
        if end - start != WINDOW_MS or start % WINDOW_MS or want is None:
            fail(f"{where} is not a window of the input")
        c, wlo, whi, wmean = want
        if (count, lo, hi) != (c, wlo, whi) or abs(mean - wmean) > 1e-9 * max(1.0, abs(wmean)):
            fail(f"{where} is {(count, lo, hi, mean)}, expected {(c, wlo, whi, wmean)}")
        if end + GRACE_MS < last_ts:
            closed_seen += 1
    closed = closed_windows(events, keys)
    if closed_seen != closed:
        fail(f"{name}: {closed - closed_seen} of {closed} closed windows missing")
    return closed


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def peak_rss_kib():
    """Peak resident set size of this process in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def report(name, events, seconds, windows, closed, rss_kib):
    """Prints the run's one line in the format of eddy's benchmark programs; `rss_kib` is the
    peak RSS read when the run ended, before the check."""
    print(
        f"name={name} events={events} events_per_s={events / seconds:.0f} "
        f"windows_emitted={windows} windows_closed={closed} checked=ok "
        f"peak_rss_kib={rss_kib}",
        flush=True,
    )
