"""Prints one line per genlbridge record read as JSON lines on stdin, e.g.
    genlbridge replay --json | python3 consumer.py
Every field is exact with the standard json module: Python's int holds any
integer, and 64-bit values beyond 2**53-1 come as strings of digits."""
import json
import sys


def u64(v):
    # A 64-bit field: a number, or beyond 2**53-1 a string of digits.
    return int(v)


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


for line in sys.stdin:
    if not line.strip():
        continue
    r = json.loads(line)
    if r["type"] == "loss":
        print("loss %s %s/%s reason=%s count=%d seq=%d-%d time=%s" % (
            r["host"], r["family"], r["group"], r["reason"], u64(r["count"]),
            u64(r.get("first_seq", 0)), u64(r.get("last_seq", 0)), r["time"]))
    else:
        print("event %s %s/%s seq=%d instance=%d time=%s attrs=%s" % (
            r["host"], r["family"], r["group"], u64(r["seq"]), r["instance"],
            r["recv_time"], canonical(r.get("attrs", {}))))
