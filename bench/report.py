#!/usr/bin/env python3
"""Number crunching for bench/run (standard library only).

  report.py latency --jsonl F --commits C --rep N --samples OUT.csv
        commit-to-receipt latencies of one run; appends "rep,id,latency_ms"
        to OUT.csv and prints "p50 p95 p99 max n missing" (ms)
  report.py drain --samples F --n N --t0 T [--rate-out OUT.csv]
        drain of a backlog from (unix_time,received) samples: prints
        "first10_eps last10_eps overall_eps"; writes the rate over time
  report.py claim-sql --queue-c src/queue.c --function NAME
        the SQL of the run(...) call in NAME, as PREPARE-able text
        ($n parameters typed from the function's argtypes)
  report.py report --raw raw.csv --meta meta.env --out results.md
        the Markdown results (median and min-max of every figure)
"""
import argparse
import csv
import json
import math
import os
import re
import statistics
import sys
from collections import defaultdict


# ------------------------------------------------------------------ helpers

def percentile(sorted_values, p):
    """Nearest-rank percentile (p in 0..100) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(k, len(sorted_values)) - 1]


def fmt(v, digits=None):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 1000 else 1 if a >= 100 else 2 if a >= 1 else 3
    s = "%.*f" % (digits, v)
    if digits == 0 and abs(v) >= 10000:
        s = "{:,}".format(int(round(v)))
    return s


# ------------------------------------------------------------------ latency

def cmd_latency(args):
    commits = {}
    with open(args.commits) as f:
        for row in csv.DictReader(f):
            commits[int(row["id"])] = float(row["commit_at"])
    received = {}
    with open(args.jsonl, errors="replace") as f:
        for line in f:
            try:
                j = json.loads(line)
                body = json.loads(j["body"])
                row_id = int(body["data"]["id"])
            except (ValueError, KeyError, TypeError):
                continue
            if row_id in commits and row_id not in received and j.get("status") == 200:
                received[row_id] = float(j["received_at"])
    lat = []
    new_file = not os.path.exists(args.samples) or os.path.getsize(args.samples) == 0
    with open(args.samples, "a") as out:
        if new_file:
            out.write("rep,id,latency_ms\n")
        for row_id in sorted(commits):
            if row_id in received:
                ms = (received[row_id] - commits[row_id]) * 1000.0
                lat.append(ms)
                out.write("%s,%d,%.3f\n" % (args.rep, row_id, ms))
    lat.sort()
    missing = len(commits) - len(lat)
    print("%.3f %.3f %.3f %.3f %d %d" % (percentile(lat, 50), percentile(lat, 95),
                                          percentile(lat, 99), lat[-1] if lat else float("nan"),
                                          len(lat), missing))
    return 0


# ------------------------------------------------------------------ drain

def read_samples(path):
    pts = []
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 2:
                continue
            try:
                pts.append((float(parts[0]), float(parts[1])))
            except ValueError:
                continue
    pts = [p for p in pts if p[0] > 0]
    pts.sort()
    return pts


def time_at(pts, count):
    """First time the received count reached count (linear interpolation)."""
    prev = None
    for t, c in pts:
        if c >= count:
            if prev is None or c == prev[1]:
                return t
            pt, pc = prev
            return pt + (t - pt) * (count - pc) / (c - pc)
        prev = (t, c)
    return None


def cmd_drain(args):
    pts = read_samples(args.samples)
    n = args.n
    base = args.base
    # a sample taken before t0 carries the receiver's previous last_at: clamp it
    pts = [(max(t, args.t0), c - base) for t, c in pts]
    if not pts or pts[-1][1] < n:
        print("nan nan nan")
        return 1
    t_first = time_at(pts, 1)
    t10 = time_at(pts, 0.1 * n)
    t90 = time_at(pts, 0.9 * n)
    t100 = time_at(pts, n)
    # the first 10% from the first receipt: the wait before it (a retry
    # falling due) is reported on its own
    start = t_first if t_first is not None else args.t0
    first = 0.1 * n / (t10 - start) if t10 and t10 > start else float("nan")
    last = 0.1 * n / (t100 - t90) if t100 and t90 and t100 > t90 else float("nan")
    overall = n / (t100 - args.t0) if t100 and t100 > args.t0 else float("nan")
    if args.rate_out:
        new_file = not os.path.exists(args.rate_out) or os.path.getsize(args.rate_out) == 0
        with open(args.rate_out, "a") as out:
            if new_file:
                out.write("label,seconds,events_per_s,received\n")
            # rate over windows of at least --window seconds
            wstart = (args.t0, 0.0)
            for t, c in pts:
                if t - wstart[0] >= args.window:
                    rate = (c - wstart[1]) / (t - wstart[0])
                    out.write("%s,%.3f,%.1f,%d\n" % (args.label, (t + wstart[0]) / 2 - args.t0,
                                                    rate, c))
                    wstart = (t, c)
    print("%.1f %.1f %.1f %.3f" % (first, last, overall, (t_first or args.t0) - args.t0))
    return 0


# ------------------------------------------------------------------ claim SQL

C_TYPES = {"INT4OID": "int4", "INT8OID": "int8", "TEXTOID": "text", "BOOLOID": "bool",
           "FLOAT8OID": "float8", "TIMESTAMPTZOID": "timestamptz", "INT8ARRAYOID": "int8[]",
           "INT4ARRAYOID": "int4[]", "TEXTARRAYOID": "text[]"}


def c_string_literals(text):
    """Concatenate the C string literals and macro names of an expression."""
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|([A-Z_][A-Z0-9_]{3,})', text):
        if m.group(1) is not None:
            out.append(bytes(m.group(1), "utf-8").decode("unicode_escape"))
        else:
            out.append(("MACRO", m.group(2)))
    return out


def cmd_claim_sql(args):
    src = open(args.queue_c).read()
    macros = {}
    for m in re.finditer(r"#define\s+([A-Z_][A-Z0-9_]*)\s*\\\n((?:.*\\\n)*.*\n)", src):
        macros[m.group(1)] = m.group(2)
    m = re.search(r"\n%s\s*\([^)]*\)\s*\{" % re.escape(args.function), src)
    if not m:
        print("function %s not found" % args.function, file=sys.stderr)
        return 1
    body = src[m.end():]
    body = body[:body.find("\n}\n")]
    argtypes = re.search(r"argtypes\[\d+\]\s*=\s*\{([^}]*)\}", body)
    types = [C_TYPES.get(t.strip(), "int4") for t in argtypes.group(1).split(",")] if argtypes else []
    call = re.search(r"\brun\((.*?),\s*\d+\s*,\s*argtypes", body, re.S)
    if not call:
        print("no run(...) call in %s" % args.function, file=sys.stderr)
        return 1
    parts = []
    for piece in c_string_literals(call.group(1)):
        if isinstance(piece, tuple):
            if piece[1] in macros:
                parts.extend(p for p in c_string_literals(macros[piece[1]]) if isinstance(p, str))
        else:
            parts.append(piece)
    sql = "".join(parts)
    nparams = max([int(x) for x in re.findall(r"\$(\d+)", sql)] or [0])
    types = (types + ["int4"] * nparams)[:nparams]
    print("PREPARE bench_claim(%s) AS\n%s;" % (", ".join(types), sql))
    return 0


# ------------------------------------------------------------------ report

def load_raw(path):
    data = defaultdict(dict)  # (phase, metric, variant) -> {rep: value}
    units = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            try:
                v = float(row["value"])
            except ValueError:
                continue
            key = (row["phase"], row["metric"], row["variant"])
            data[key][row["rep"]] = v
            units[key] = row["unit"]
    return data, units


def load_meta(path):
    meta = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    meta[k] = v
    return meta


class Table:
    def __init__(self):
        self.rows = []
        self.targets = []

    def add(self, section, label, values, unit="", digits=None, target=None, check=None,
            note=""):
        vals = [v for v in values if v is not None and not math.isnan(v)]
        if vals:
            med, lo, hi = statistics.median(vals), min(vals), max(vals)
        else:
            med = lo = hi = float("nan")
        met = ""
        if check is not None:
            met = "n/a" if not vals else ("✅ met" if check(med) else "❌ missed")
            self.targets.append((label, fmt(med, digits) + (" " + unit if unit else ""),
                                 target, met))
        self.rows.append((section, label, fmt(med, digits), "%s – %s" % (fmt(lo, digits), fmt(hi, digits))
                          if len(vals) > 1 else fmt(lo, digits), len(vals), unit, target or "", met,
                          note))


def per_rep(a, b, op):
    out = []
    for rep in sorted(set(a) & set(b)):
        try:
            out.append(op(a[rep], b[rep]))
        except ZeroDivisionError:
            out.append(float("nan"))
    return out


def cmd_report(args):
    data, units = load_raw(args.raw)
    meta = load_meta(args.meta)
    rows = int(meta.get("ROWS", "0") or 0)
    t = Table()

    def get(phase, metric, variant):
        return data.get((phase, metric, variant), {})

    def vals(phase, metric, variant):
        return list(get(phase, metric, variant).values())

    # 1. write path
    for stmt in ("insert", "update"):
        a = get("write", stmt + "_ms", "a")
        for v, label, target, check in (
                ("b", "tracked, no matching webhook (b/a)", "≤ 1.10", lambda x: x <= 1.10),
                ("c", "tracked, 1 matching webhook (c/a)", "≤ 2.0", lambda x: x <= 2.0),
                ("d", "tracked, 10 matching webhooks (d/a)", "≤ 1.1 × c/a", None)):
            r = per_rep(get("write", stmt + "_ms", v), a, lambda x, y: x / y)
            t.add("1. write path", "%s %s" % (stmt.upper(), label), r, "×", 2, target, check)
        dc = per_rep(get("write", stmt + "_ms", "d"), get("write", stmt + "_ms", "c"),
                     lambda x, y: x / y)
        t.add("1. write path", "%s d/c (10 webhooks vs 1)" % stmt.upper(), dc, "×", 2,
              "≤ 1.10", lambda x: x <= 1.10)
    if rows:
        for stmt in ("insert", "update"):
            for v, what in (("a", "untracked"), ("b", "no match"), ("c", "1 webhook"),
                            ("d", "10 webhooks")):
                us = [ms * 1000.0 / rows for ms in vals("write", stmt + "_ms", v)]
                t.add("1. write path", "%s µs/row, %s (%s)" % (stmt.upper(), v, what), us, "µs", 2)

    if rows:
        for stmt in ("insert", "update"):
            for v, what in (("a", "untracked"), ("c", "1 webhook")):
                t.add("1. write path", "%s WAL bytes/row, %s (%s)" % (stmt.upper(), v, what),
                      vals("write", stmt + "_wal_per_row", v), "bytes", 0)

    # 2. delivery rate and fan-out
    rate = get("delivery", "rate_eps", "single")
    ceil = get("delivery", "wrk_rps", "ceiling")
    t.add("2. delivery", "delivery rate, 1 webhook", list(rate.values()), "events/s", 0,
          "≥ 20,000", lambda x: x >= 20000)
    t.add("2. delivery", "receiver ceiling (wrk, same body and connections)", list(ceil.values()),
          "req/s", 0)
    t.add("2. delivery", "delivery rate / receiver ceiling",
          per_rep(rate, ceil, lambda x, y: x / y), "×", 3, "aim ≥ 0.5", lambda x: x >= 0.5)
    t.add("2. delivery", "worker CPU while delivering", vals("delivery", "worker_cpu_pct", "single"),
          "% of a core", 0)
    t.add("2. delivery", "worker CPU per event", vals("delivery", "cpu_us_per_event", "single"),
          "µs", 0)
    t.add("2. delivery", "WAL per event: capture (INSERT of the row + the event)",
          vals("delivery", "wal_bytes_per_event", "capture"), "bytes", 0)
    t.add("2. delivery", "WAL per event: delivery (dispatch, attempt, outcome)",
          vals("delivery", "wal_bytes_per_event", "delivery"), "bytes", 0)
    mcs = sorted({k[2] for k in data if k[0] == "fanout" and k[1] == "rate_eps"},
                 key=lambda s: int(s.split("=")[1]))
    best = None
    for mc in mcs:
        v = vals("fanout", "rate_eps", mc)
        med = statistics.median(v) if v else float("nan")
        best = med if best is None or med > best else best
        t.add("2. delivery", "fan-out, 10 webhooks, max_connections %s (total)" % mc.split("=")[1],
              v, "deliveries/s", 0, "≥ 20,000", lambda x: x >= 20000)

    # 3. latency
    for p, target, check in (("p50", "≤ 2 ms", lambda x: x <= 2.0), ("p95", None, None),
                             ("p99", "≤ 10 ms", lambda x: x <= 10.0), ("max", None, None)):
        t.add("3. latency", "COMMIT → receipt %s (50 commits/s)" % p,
              vals("latency", p + "_ms", "all"), "ms", 2, target, check)
    t.add("3. latency", "samples not received", vals("latency", "missing", "all"), "", 0)

    # 4. backlog
    first = get("backlog", "first10_eps", "drain")
    last = get("backlog", "last10_eps", "drain")
    t.add("4. backlog", "backlog queued (receiver down)", vals("backlog", "events", "queued"),
          "events", 0)
    t.add("4. backlog", "receiver-down phase: refused attempts/s", vals("backlog", "refused_per_s", "down"),
          "attempts/s", 0)
    t.add("4. backlog", "fast-forward COMMIT → first delivery (±0.2 s: stats file period)", vals("backlog", "up_to_first_s", "drain"), "s", 2)
    t.add("4. backlog", "drain rate, first 10% (from the first delivery)", list(first.values()), "events/s", 0)
    t.add("4. backlog", "drain rate, last 10%", list(last.values()), "events/s", 0)
    t.add("4. backlog", "drain rate, overall", vals("backlog", "drain_eps", "drain"), "events/s", 0)
    t.add("4. backlog", "last 10% / first 10%", per_rep(last, first, lambda x, y: x / y), "×", 2,
          "≥ 0.8", lambda x: x >= 0.8)
    t.add("4. backlog", "worker RssAnon (end of drain)", vals("backlog", "rss_anon_mb", "worker"),
          "MB", 1, "≤ 64 MB", lambda x: x <= 64)
    t.add("4. backlog", "worker RssAnon (peak sampled)", vals("backlog", "rss_anon_peak_mb", "worker"),
          "MB", 1)
    t.add("4. backlog", "worker VmHWM (incl. shared buffers touched)", vals("backlog", "vmhwm_mb", "worker"),
          "MB", 1)
    t.add("4. backlog", "claim query uses an index (1 = yes)", vals("backlog", "claim_index", "plan"),
          "", 0, "yes", lambda x: x >= 1)
    t.add("4. backlog", "claim query time at peak backlog", vals("backlog", "claim_ms", "peak"), "ms", 2)
    t.add("4. backlog", "claim query time after the drain (empty queue)", vals("backlog", "claim_ms", "drained"),
          "ms", 2)
    t.add("4. backlog", "retention pruning: from retention = 60s (set after the drain) to empty tables",
          vals("backlog", "prune_s", "all"), "s", 0)
    for when in ("peak", "drained", "pruned", "vacuumed"):
        for tbl in ("events", "deliveries", "attempts"):
            v = vals("backlog", "size_mb", "%s@%s" % (tbl, when))
            r = vals("backlog", "rows", "%s@%s" % (tbl, when))
            if v:
                t.add("4. backlog", "webhooks.%s size, %s" % (tbl, when), v, "MB", 1,
                      note="%s rows" % fmt(statistics.median(r), 0) if r else "")

    # 5. retry storm
    h = get("storm", "healthy_eps", "rate")
    s = get("storm", "storm_eps", "rate")
    hw = get("storm", "healthy_window", "rate")
    sw = get("storm", "storm_window", "rate")
    t.add("5. retry storm", "healthy rate, sustained (window while both are busy)", list(hw.values()),
          "events/s", 0)
    t.add("5. retry storm", "successful deliveries/s with 50% failures, sustained", list(sw.values()),
          "events/s", 0)
    t.add("5. retry storm", "storm / healthy, sustained", per_rep(sw, hw, lambda x, y: x / y), "×", 2,
          "≥ 0.5", lambda x: x >= 0.5)
    t.add("5. retry storm", "healthy rate, COMMIT to last receipt", list(h.values()), "events/s", 0)
    t.add("5. retry storm", "successful deliveries/s with 50% failures, COMMIT to last success",
          list(s.values()), "events/s", 0)
    t.add("5. retry storm", "storm / healthy, COMMIT to last (with the retry-timer tail)",
          per_rep(s, h, lambda x, y: x / y), "×", 2)
    t.add("5. retry storm", "attempts per event in the storm", vals("storm", "attempts_per_event", "storm"),
          "", 2)
    for v, label in (("healthy", "healthy"), ("storm", "storm")):
        t.add("5. retry storm", "worker CPU, %s" % label, vals("storm", "cpu_pct", v), "% of a core", 0)
        t.add("5. retry storm", "worker CPU per successful delivery, %s" % label,
              vals("storm", "cpu_us_per_success", v), "µs", 0)
    t.add("5. retry storm", "worker CPU while idle after the storm", vals("storm", "cpu_pct", "idle"),
          "% of a core", 1, "≈ 0 (no busy loop)", lambda x: x <= 2.0)
    t.add("5. retry storm", "worker CPU while 1,000 failed deliveries wait for their retry",
          vals("storm", "cpu_pct", "waiting"), "% of a core", 1, "≈ 0 (no busy loop)",
          lambda x: x <= 2.0)

    out = []
    out.append("# pg-webhooks benchmark results\n")
    out.append("- date: %s" % meta.get("DATE", "?"))
    out.append("- mode: %s (%s repetitions; sizes: %s rows, %s events, fan-out %s events × 10 webhooks, "
               "%s latency samples per repetition, %s backlog, %s storm events)" % (
                   meta.get("MODE", "?"), meta.get("REPS", "?"), meta.get("ROWS", "?"),
                   meta.get("EVENTS", "?"), meta.get("FANOUT_EVENTS", "?"), meta.get("LAT_N", "?"),
                   meta.get("BACKLOG", "?"), meta.get("STORM_EVENTS", "?")))
    out.append("- code: %s" % meta.get("GIT", "?"))
    out.append("- machine: %s" % meta.get("MACHINE", "?"))
    out.append("- PostgreSQL: %s; libcurl %s" % (meta.get("PGVERSION", "?"), meta.get("CURL", "?")))
    out.append("- wall time of the run: %s s" % meta.get("ELAPSED", "?"))
    out.append("")
    if meta.get("MODE") == "smoke":
        out.append("**Smoke run**: the sizes are far too small for these figures to mean anything "
                   "(start-up and retry-timer effects dominate); it checks that every phase works. "
                   "Missed targets do not fail it; broken phases do.\n")
    out.append("Every figure is the median over the repetitions (min – max beside it); every ratio is "
               "taken per repetition between two measurements made side by side in the same run.\n")
    if t.targets:
        out.append("## Targets\n")
        out.append("| figure | median | target | |")
        out.append("|---|---:|---|---|")
        for label, med, target, met in t.targets:
            out.append("| %s | %s | %s | %s |" % (label, med, target, met))
        out.append("")
    out.append("## All figures\n")
    section = None
    for sec, label, med, rng, n, unit, target, met, note in t.rows:
        if sec != section:
            out.append("\n### %s\n" % sec)
            out.append("| figure | median | min – max | n | unit | target | |")
            out.append("|---|---:|---:|---:|---|---|---|")
            section = sec
        out.append("| %s%s | %s | %s | %d | %s | %s | %s |" % (label, (" (%s)" % note) if note else "",
                                                            med, rng, n, unit, target, met))
    out.append("")
    notes = os.path.join(os.path.dirname(args.out), "notes.md")
    if os.path.exists(notes):
        out.append(open(notes).read())
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    # the summary table on stdout, for the terminal
    print("\n".join(out[:out.index("## All figures\n")] if "## All figures\n" in out else out))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--jsonl", required=True)
    p.add_argument("--commits", required=True)
    p.add_argument("--rep", default="1")
    p.add_argument("--samples", required=True)
    p = sub.add_parser("drain")
    p.add_argument("--samples", required=True)
    p.add_argument("--n", type=float, required=True)
    p.add_argument("--base", type=float, default=0)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--rate-out")
    p.add_argument("--label", default="drain")
    p.add_argument("--window", type=float, default=0.5)
    p = sub.add_parser("claim-sql")
    p.add_argument("--queue-c", required=True)
    p.add_argument("--function", default="webhooks_queue_claim")
    p = sub.add_parser("report")
    p.add_argument("--raw", required=True)
    p.add_argument("--meta")
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    return {"latency": cmd_latency, "drain": cmd_drain, "claim-sql": cmd_claim_sql,
            "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
