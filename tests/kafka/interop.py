#!/usr/bin/env python3
"""interop.py HELPER - kafka:// against Python's confluent_kafka, both ways.

Run under sluice-kafka-mock (SL_KAFKA_BOOTSTRAP, SL_KAFKA_URL). HELPER is the
kafka_interop program (the sluice side).
1. sluice publishes a message with metadata; confluent_kafka reads it: the
   value is the payload, headers are the metadata plus sluice_uuid.
2. confluent_kafka produces a record with headers; sluice receives it: the
   payload and metadata match, the id comes from the sluice_uuid header.
"""
import subprocess
import sys
import uuid

from confluent_kafka import Consumer, Producer

helper = sys.argv[1]
import os
bootstrap = os.environ["SL_KAFKA_BOOTSTRAP"]
url = os.environ["SL_KAFKA_URL"]


def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)


# 1. sluice -> confluent_kafka
topic = "interop-a-" + uuid.uuid4().hex
payload = "héllo from sluice"
meta = {"order_id": "42", "utf8": "ü€", "empty": ""}
out = subprocess.run([helper, "publish", url, topic, payload] +
                     [f"{k}={v}" for k, v in meta.items()],
                     check=True, capture_output=True, text=True).stdout.strip()
sent_uuid = out
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-" + uuid.uuid4().hex,
              "auto.offset.reset": "earliest"})
c.subscribe([topic])
msg = None
for _ in range(150):
    msg = c.poll(0.1)
    if msg is not None and not msg.error():
        break
check(msg is not None and not msg.error(), "confluent_kafka received nothing")
check(msg.value() == payload.encode(), f"payload {msg.value()!r}")
hdrs = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
check(hdrs.get("sluice_uuid") == sent_uuid, f"uuid header {hdrs}")
for k, v in meta.items():
    check(hdrs.get(k) == v, f"header {k}: {hdrs.get(k)!r} != {v!r}")
c.close()
print("sluice -> confluent_kafka: payload and headers intact")

# 2. confluent_kafka -> sluice
topic = "interop-b-" + uuid.uuid4().hex
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
my_uuid = str(uuid.uuid4())
p.produce(topic, value="hi from python ✓".encode(),
          headers=[("sluice_uuid", my_uuid), ("source", "python"), ("n", "7")])
check(p.flush(10) == 0, "python producer did not flush")
out = subprocess.run([helper, "receive", url, topic], check=True, capture_output=True,
                     text=True).stdout.splitlines()
check(f"uuid={my_uuid}" in out, f"uuid: {out}")
check("payload=hi from python ✓" in out, f"payload: {out}")
check("meta source=python" in out and "meta n=7" in out, f"meta: {out}")
check(not any(l.startswith("meta sluice_uuid") for l in out), f"uuid leaked into meta: {out}")
print("confluent_kafka -> sluice: payload and headers intact")
