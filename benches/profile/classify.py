#!/usr/bin/env python3
"""Splits a `perf record --call-graph dwarf` profile into where-the-time-goes buckets.

Usage: perf script -i perf.data --no-inline | python3 classify.py [--by-thread]

A sample whose stack holds an fsync or a `sqlite3_exec` (SQLite runs BEGIN/COMMIT through it)
is charged to that. Any other sample is charged to the innermost frame that matches a bucket of
RULES, walking from the leaf towards the thread's root, so allocation, copying and kernel time
go to the work that caused them (malloc under SHA-256 counts as hashing), and the runtime's
frames at the root of every stack only get what nothing more specific claims. Percentages are
of all samples in the file.
"""
import collections
import re
import sys

# Charged when any frame of the stack matches.
ANYWHERE = [
    ("fsync (CPU part of the syscall)", r"fsync|fdatasync|ext4_sync_file"),
    ("SQLite BEGIN/COMMIT: WAL write (sqlite3_exec)", r"\bsqlite3_exec\b"),
]
# Charged to the innermost matching frame; within one frame, the first rule that matches.
RULES = [
    ("SQLite statements: prepare/bind/step", r"sqlite3_(step|prepare|bind|reset|clear_bindings|column|finalize)|sqlite3VdbeExec"),
    ("sqlx: worker thread, channel, statement bookkeeping", r"sqlx_sqlite|sqlx_core|flume::"),
    ("hash chain: SHA-256", r"sha2::|digest_blocks|Sha256"),
    ("hash chain: canonical JSON", r"canonical::"),
    ("JSON values: clone/drop", r"serde_json::value::Value as core::clone|clone_subtree|drop_in_place<serde_json|BTreeMap<K,V,A> as core::clone|btree::map::IntoIter|dying_next"),
    ("JSON: serialise", r"serde_json::ser|serde_json::to_|serialize_str|Serializer"),
    ("JSON: parse", r"serde_json::de|Deserializer|deserialize"),
    ("store writer: batch planning, other", r"lianxi_store::sqlite::(plan|writer)"),
    ("store: reads (read_stream, decode rows)", r"lianxi_store::sqlite::(rows|SqliteStore as lianxi_store::EventStore>::read_stream)|decode_all"),
    ("store: append() entry (validate, queue, reply)", r"SqliteStore as lianxi_store::EventStore>::append|SqliteStore::submit|AppendRequest::validate"),
    ("tracing spans and events", r"tracing_subscriber|tracing_core|tracing::span|sharded_slab"),
    ("metrics", r"metrics_exporter_prometheus|metrics::|metrics_util"),
    ("domain: decide, upcast, parse", r"lianxi_domain"),
    ("commands: handler, auth, metadata", r"lianxi_commands"),
    ("gateway: routing, extraction, errors", r"lianxi_gateway|axum::|matchit"),
    ("HTTP: hyper, sockets", r"hyper::|hyper_util|h2::|tower_http|tower::|reqwest|mio::net|TcpStream"),
    ("harness: building requests and counting", r"lianxi_bench"),
    ("tokio: scheduling, wake-ups, timers, I/O driver", r"tokio::|mio::|parking_lot|futex"),
]
COMPILED_ANYWHERE = [(name, re.compile(pattern)) for name, pattern in ANYWHERE]
COMPILED = [(name, re.compile(pattern)) for name, pattern in RULES]
FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")


def classify(frames):
    for name, pattern in COMPILED_ANYWHERE:
        if any(pattern.search(symbol) for symbol, _ in frames):
            return name
    for symbol, _ in frames:
        for name, pattern in COMPILED:
            if pattern.search(symbol):
                return name
    leaf = frames[0] if frames else ("?", "?")
    if "kernel" in leaf[1]:
        return "kernel, other (syscalls, page cache, scheduler)"
    if "libc" in leaf[1]:
        return "libc, other (malloc, memcpy outside the buckets above)"
    return "other"


def main():
    by_thread = "--by-thread" in sys.argv
    counts = collections.Counter()
    threads = collections.Counter()
    total = 0
    comm = None
    frames = []

    def flush():
        nonlocal total
        if comm is None:
            return
        total += 1
        bucket = classify(frames)
        counts[bucket] += 1
        threads[(comm, bucket)] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if not line[0].isspace():
            comm = line.split()[0]
            continue
        match = FRAME.match(line)
        if match:
            frames.append((match.group(1), match.group(2)))
    flush()
    if total == 0:
        print("no samples")
        return
    print(f"{total} samples")
    print("| where | share of CPU samples |")
    print("|---|---:|")
    for bucket, count in counts.most_common():
        print(f"| {bucket} | {100.0 * count / total:.1f} % |")
    if by_thread:
        print()
        print("| thread | where | share |")
        print("|---|---|---:|")
        for (thread, bucket), count in sorted(threads.items(), key=lambda kv: -kv[1]):
            if count * 200 >= total:
                print(f"| {thread} | {bucket} | {100.0 * count / total:.1f} % |")


if __name__ == "__main__":
    main()
