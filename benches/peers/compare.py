#!/usr/bin/env python3
"""Runs the sensor workload (workload.py) in eddy, Bytewax and Quix Streams, one process each,
and prints a table of events/s, peak RSS and eddy's ratio to each peer. Every run checks its own
windows and the script stops at the first that fails. Exits 1 when eddy misses a floor on the
5-key workload (50 x Quix Streams, 10 x Bytewax).

    python3 benches/peers/compare.py [--events 1000000] [--keys 5,100000]

Needs: cargo (builds eddy's stream-bench), PyPI (the peers go into ~/.cache/eddy/peers-venv) and
tansu for Quix Streams (~/.cache/eddy/tansu/bin/tansu, $EDDY_TANSU or PATH; installed with cargo
if missing, about 10 minutes on two cores). The broker runs on 127.0.0.1 with memory storage.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = Path.home() / ".cache" / "eddy"
VENV = CACHE / "peers-venv"
TANSU_VERSION = "0.6.0"
FLOORS = {"quix": 50.0, "bytewax": 10.0}


def run(cmd, **kw):
    """Runs `cmd`; exits with its output when it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout


def venv_python():
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV}", file=sys.stderr)
        run([sys.executable, "-m", "venv", str(VENV)])
    run([str(python), "-m", "pip", "install", "-q", "-r", str(HERE / "requirements.txt")])
    return python


def tansu_binary():
    if os.environ.get("EDDY_TANSU"):
        return os.environ["EDDY_TANSU"]
    cached = CACHE / "tansu" / "bin" / "tansu"
    if cached.exists():
        return str(cached)
    if shutil.which("tansu"):
        return shutil.which("tansu")
    print(f"installing tansu {TANSU_VERSION} into {cached.parent.parent}", file=sys.stderr)
    root = CACHE / "tansu"
    env = dict(os.environ, CARGO_TARGET_DIR=str(root / "build"))
    run(["cargo", "install", "--locked", "--features", "dynostore", f"tansu@{TANSU_VERSION}",
         "--root", str(root)], env=env)
    return str(cached)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(workdir):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "STORAGE_ENGINE")}
    log = open(workdir / "tansu.log", "w")
    broker = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        cwd=workdir, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return broker, f"127.0.0.1:{port}"
        except OSError:
            if broker.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"tansu did not start; see {workdir / 'tansu.log'}")
            time.sleep(0.05)


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split())


def eddy(events, keys):
    if keys not in (5, 100_000):
        sys.exit("eddy's stream-bench runs the sensor workload with 5 or 100000 keys")
    name = "tumbling_10s_json_5_keys" if keys == 5 else "tumbling_10s_json_100k_keys"
    out = run(["cargo", "run", "-q", "--release", "-p", "eddy-benches", "--bin", "stream-bench",
               "--", "--only", name, "--records", str(events)], cwd=ROOT)
    f = fields(next(l for l in out.splitlines() if l.startswith("name=")))
    return float(f["records_per_s"]), int(f["peak_rss_kib"])


def peer(python, script, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = run([str(python), str(HERE / script), *map(str, args)], cwd=HERE, env=env)
    f = fields(next(l for l in out.splitlines() if l.startswith("name=")))
    return float(f["events_per_s"]), int(f["peak_rss_kib"])


def main():
    args = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    args.add_argument("--events", type=int, default=1_000_000)
    args.add_argument("--keys", default="5,100000", help="comma-separated key counts (5, 100000)")
    o = args.parse_args()
    python = venv_python()
    workdir = Path(tempfile.mkdtemp(prefix="eddy-peers-"))
    broker, address = start_broker(workdir)
    rows, missed = [], []
    try:
        for keys in map(int, o.keys.split(",")):
            print(f"{keys} keys: eddy", file=sys.stderr)
            e_rate, e_rss = eddy(o.events, keys)
            rows.append((keys, "eddy", e_rate, e_rss, None))
            for engine, script, extra in [("bytewax", "bytewax_sensor.py", []),
                                          ("quix", "quix_sensor.py", ["--broker", address])]:
                print(f"{keys} keys: {engine}", file=sys.stderr)
                rate, rss = peer(python, script, "--events", o.events, "--keys", keys, *extra)
                ratio = e_rate / rate
                rows.append((keys, engine, rate, rss, ratio))
                if keys == 5 and ratio < FLOORS[engine]:
                    missed.append(f"eddy is {ratio:.1f} x {engine}, floor {FLOORS[engine]:.0f} x")
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"sensor workload: {o.events} JSON readings, 10 s tumbling windows, count/min/max/mean, "
          "every run's windows checked")
    print(f"{'keys':>7}  {'engine':<8} {'events/s':>10}  {'peak RSS MiB':>12}  {'eddy x':>7}")
    for keys, engine, rate, rss, ratio in rows:
        x = "" if ratio is None else f"{ratio:.1f}"
        print(f"{keys:>7}  {engine:<8} {rate:>10,.0f}  {rss / 1024:>12,.0f}  {x:>7}")
    for m in missed:
        print(f"floor missed: {m}", file=sys.stderr)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
