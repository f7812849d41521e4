"""The sensor workload (see workload.py) in Quix Streams, against a Kafka-protocol broker: the
readings are produced to a one-partition topic first, then an Application (state in RocksDB
with changelog topics, at-least-once, its defaults) runs a 10 s tumbling window with 1 s grace,
count/min/max/mean, final results closed by partition stream time, written to an output topic.
Prints one line: events/s from the first reading processed to the last (consumer-group join
excluded), peak RSS of this process (the broker's is not counted), and the checked window count.

Quix Streams has no broker-less way to run a stateful application: its state stores open only on
partitions the Kafka consumer is assigned, so this peer always needs the broker.

    python quix_sensor.py --broker 127.0.0.1:9092 --events 1000000 --keys 5
"""

import argparse
import os
import tempfile
import time

from confluent_kafka import Producer
from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Mean, Min
from quixstreams.models import TopicConfig

import workload

# Quix Streams reads these back from the broker when it creates changelog topics; tansu only
# reports configs a topic was created with.
RETENTION = {"retention.ms": "604800000", "retention.bytes": "-1"}


def produce(broker, topic, events, keys):
    producer = Producer(
        {"bootstrap.servers": broker, "linger.ms": 20, "batch.num.messages": 10000}
    )
    for i in range(events):
        key, value, ts = workload.reading(i, keys)
        while True:
            try:
                producer.produce(topic, value=value, key=key.encode(), timestamp=ts, partition=0)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(60):
        workload.fail(f"quix: readings not delivered to {topic} within 60 s")


def main():
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--broker", required=True)
    args.add_argument("--events", type=int, default=1_000_000)
    args.add_argument("--keys", type=int, default=5)
    o = args.parse_args()
    run = f"{o.keys}-{os.getpid()}"
    config = TopicConfig(num_partitions=1, replication_factor=1, extra_config=RETENTION)
    app = Application(
        broker_address=o.broker,
        consumer_group=f"sensors-{run}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
        loglevel="WARNING",
    )
    readings = app.topic(
        f"sensors-{run}",
        key_deserializer="str",
        config=config,
        timestamp_extractor=lambda value, _headers, _ts, _type: value["ts"],
    )
    results = app.topic(f"agg-{run}", key_serializer="str", config=config)
    produce(o.broker, readings.name, o.events, o.keys)

    seen = {"n": 0, "first": None, "last": None}
    emitted = []

    def count_input(_value):
        if seen["first"] is None:
            seen["first"] = time.perf_counter()
        seen["n"] += 1
        if seen["n"] == o.events:
            seen["last"] = time.perf_counter()
            app.stop()

    def collect(w, key, _ts, _headers):
        emitted.append((key, w["start"], w["end"], w["count"], w["min"], w["max"], w["mean"]))

    sdf = app.dataframe(readings)
    sdf = sdf.update(count_input)
    sdf = (
        sdf.tumbling_window(workload.WINDOW_MS, grace_ms=workload.GRACE_MS)
        .agg(count=Count(), min=Min("value"), max=Max("value"), mean=Mean("value"))
        .final(closing_strategy="partition")
    )
    sdf = sdf.update(collect, metadata=True)
    sdf.to_topic(results)
    app.run()
    if seen["last"] is None:
        workload.fail(f"quix: stopped after {seen['n']} of {o.events} readings")
    rss = workload.peak_rss_kib()
    closed = workload.check("quix", emitted, o.events, o.keys)
    seconds = seen["last"] - seen["first"]
    workload.report(f"quix_{o.keys}_keys", o.events, seconds, len(emitted), closed, rss)


if __name__ == "__main__":
    main()
