#!/usr/bin/env python3
"""Paced single-row commits for bench/run's latency measurement.

One persistent psql session (connection settings from PGHOST/PGPORT/PGUSER)
gets, every --interval-ms, one autocommit INSERT into a tracked table,
followed by a psql \\echo marker.  psql flushes its output after each
command, so the marker is read right after the COMMIT returned; the client
clock (time.time(), Unix seconds) is taken at that moment and written as
"id,commit_at" to --out.  The receiver's --jsonl gives received_at for the
same row id (the payload's data.id), so commit-to-receipt latency is
received_at - commit_at, both from this machine's clock.

Bounded: n commits, and a deadline of n * interval + 30 s overall.
"""
import argparse
import os
import select
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--id-base", type=int, default=0)
    ap.add_argument("--site", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    interval = args.interval_ms / 1000.0
    deadline = time.time() + args.n * interval + 30.0
    psql = subprocess.Popen(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", args.db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    fd = psql.stdout.fileno()
    pending = b""

    def read_marker(marker):
        nonlocal pending
        while True:
            nl = pending.find(b"\n")
            while nl >= 0:
                line, pending = pending[:nl], pending[nl + 1:]
                if line == marker:
                    return True
                nl = pending.find(b"\n")
            left = deadline - time.time()
            if left <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return False
            chunk = os.read(fd, 65536)
            if not chunk:
                return False  # psql exited (an SQL error with ON_ERROR_STOP)
            pending += chunk

    # the session is ready once a first marker comes back
    psql.stdin.write(b"\\echo READY\n")
    if not read_marker(b"READY"):
        print("latency.py: psql did not start", file=sys.stderr)
        return 1

    rows = []
    start = time.time()
    for i in range(args.n):
        due = start + i * interval
        now = time.time()
        if due > now:
            time.sleep(due - now)
        row_id = args.id_base + i + 1
        marker = b"C%d" % row_id
        psql.stdin.write(
            b"INSERT INTO pages (id, site_id, title, body, status, updated_at) "
            b"VALUES (%d, %d, 'latency %d', repeat(md5('%d'), 16), 'draft', now());\n"
            b"\\echo %s\n" % (row_id, args.site, row_id, row_id, marker))
        if not read_marker(marker):
            print("latency.py: commit %d did not return before the deadline" % row_id,
                  file=sys.stderr)
            psql.kill()
            return 1
        rows.append((row_id, time.time()))

    psql.stdin.close()
    try:
        psql.wait(timeout=10)
    except subprocess.TimeoutExpired:
        psql.kill()
    with open(args.out, "w") as f:
        f.write("id,commit_at\n")
        for row_id, t in rows:
            f.write("%d,%.6f\n" % (row_id, t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
