#!/usr/bin/env bash
# receiver/test.sh - TAP tests for webhooks-receiver (run directly or with prove).
#
# Owns: black-box checks of the built binary over HTTP on 127.0.0.1, ports
# 18787 and up. Uses only bash, curl, python3 (to parse JSON lines) and the
# binary. Every wait and every request is bounded, and every receiver
# started here is stopped by its own pid on exit.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/webhooks-receiver}
TMP=$(mktemp -d)
PORT_BASE=18787
NEXT_PORT=$PORT_BASE
PIDS=()
T=0
FAILED=0

# Standard Webhooks reference vector.
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
OTHER_SECRET=whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHM=
MSG_ID=msg_p5jXN8AQM9LWM0D4loKWxJek
MSG_TS=1614265330
BODY='{"test": 2432232314}'
GOOD_SIG='v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
BAD_SIG='v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# check DESCRIPTION COMMAND... : one TAP line from the command's exit status.
check() {
	local desc=$1
	shift
	T=$((T + 1))
	if "$@"; then
		echo "ok $T - $desc"
	else
		echo "not ok $T - $desc"
		FAILED=$((FAILED + 1))
	fi
}

# Diagnostic lines that TAP consumers show but do not count.
diag() { sed 's/^/# /' "$@" >&2; }

# start NAME ARGS... : starts a receiver on the next free test port and
# waits (at most 5 s) for its ready file. Sets PORT and PID.
start() {
	local name=$1 i
	shift
	PORT=$NEXT_PORT
	NEXT_PORT=$((NEXT_PORT + 1))
	"$BIN" --port "$PORT" --ready-file "$TMP/$name.ready" --pidfile "$TMP/$name.pid" \
		--jsonl "$TMP/$name.jsonl" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	PID=$!
	PIDS+=("$PID")
	for i in $(seq 50); do
		[ -s "$TMP/$name.ready" ] && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "# receiver $name did not get ready" >&2
	diag "$TMP/$name.err"
	return 1
}

# stop PID : SIGTERM, then wait at most 5 s; returns the receiver's exit code.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$pid"
}

# post SIGNATURE [curl args...] : one signed delivery of the reference
# vector; prints the HTTP status. An empty SIGNATURE sends no header.
post() {
	local sig=$1
	shift
	local hdr=()
	[ -n "$sig" ] && hdr=(-H "webhook-signature: $sig")
	curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X POST \
		-H "webhook-id: $MSG_ID" -H "webhook-timestamp: $MSG_TS" "${hdr[@]}" \
		-H 'Content-Type: application/json' --data-binary "$BODY" "$@" \
		"http://127.0.0.1:$PORT/webhook"
}

# last_field FILE FIELD : a field of the last JSON line of FILE.
last_field() {
	python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])[sys.argv[2]])' "$1" "$2"
}

# quietly COMMAND... : run with output discarded, keeping only the exit status.
quietly() { "$@" >/dev/null 2>&1; }

eq() { [ "$1" = "$2" ] || { echo "# expected '$2', got '$1'" >&2; return 1; }; }

# --- crypto ------------------------------------------------------------
check "--self-test passes" quietly "$BIN" --self-test

# --- signatures ----------------------------------------------------------
start sig --secret "$SECRET"
post "$GOOD_SIG" >/dev/null
check "reference vector verifies as valid" eq "$(last_field "$TMP/sig.jsonl" signature)" valid
post "$BAD_SIG" >/dev/null
check "wrong signature is invalid" eq "$(last_field "$TMP/sig.jsonl" signature)" invalid
post "v1,bm90LXRoaXMtb25l $GOOD_SIG" >/dev/null
check "second of two signatures matching is valid" \
	eq "$(last_field "$TMP/sig.jsonl" signature)" valid
post "v1a,$GOOD_SIG" >/dev/null
check "non-v1 entry is not accepted" eq "$(last_field "$TMP/sig.jsonl" signature)" invalid
post "" >/dev/null
check "no signature header is missing" eq "$(last_field "$TMP/sig.jsonl" signature)" missing
curl -s --max-time 10 -o /dev/null -X POST -H "webhook-id: $MSG_ID" \
	-H "webhook-timestamp: $MSG_TS" -H "webhook-signature: $GOOD_SIG" \
	--data-binary '{"test": 2432232315}' "http://127.0.0.1:$PORT/webhook"
check "tampered body is invalid" eq "$(last_field "$TMP/sig.jsonl" signature)" invalid
check "stdout line names id, signature and status" \
	grep -qx "#1 - $MSG_ID sig=valid 200" "$TMP/sig.out"
curl -s --max-time 10 -o /dev/null -X POST -H "webhook-id: evt_1" \
	--data-binary '{"id":"x","type" : "page.published","data":{}}' "http://127.0.0.1:$PORT/"
check "stdout line shows the event type" grep -q '^#7 page.published evt_1 sig=missing 200$' "$TMP/sig.out"
stop "$PID"
check "SIGTERM exits 0" [ $? -eq 0 ]
check "SIGTERM prints the summary line" \
	grep -qx 'received 7 requests (valid 2, invalid 3, missing 2)' "$TMP/sig.err"
check "pid and ready files are removed on exit" [ ! -e "$TMP/sig.pid" -a ! -e "$TMP/sig.ready" ]

start rotate --secret "$OTHER_SECRET" --secret "$SECRET" --quiet
post "$GOOD_SIG" >/dev/null
check "any of several --secret values can match" \
	eq "$(last_field "$TMP/rotate.jsonl" signature)" valid
check "--quiet prints no request lines" [ ! -s "$TMP/rotate.out" ]
check "pidfile holds the pid" eq "$(cat "$TMP/rotate.pid")" "$PID"
stop "$PID"

start nosecret
post "$GOOD_SIG" >/dev/null
check "without --secret the signature is unchecked" \
	eq "$(last_field "$TMP/nosecret.jsonl" signature)" unchecked

# --- JSON lines ----------------------------------------------------------
printf '\x01\xff "quoted" \\ tab\there \xc3\xa9\n' >"$TMP/odd.bin"
curl -s --max-time 10 -o /dev/null -X POST -H 'X-Mixed-Case: Yes' \
	--data-binary @"$TMP/odd.bin" "http://127.0.0.1:$PORT/odd/path"
stop "$PID"
check_jsonl() {
	python3 - "$TMP/nosecret.jsonl" "$BODY" <<'EOF'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
recs = [json.loads(l) for l in lines]
assert len(recs) == 2, len(recs)
want = {"n", "received_at", "method", "path", "status", "webhook_id",
        "webhook_timestamp", "signature", "headers", "body"}
for r in recs:
    assert set(r) == want, set(r) ^ want
    assert isinstance(r["received_at"], float) and r["received_at"] > 1.6e9
a, b = recs
assert (a["n"], a["method"], a["path"], a["status"]) == (1, "POST", "/webhook", 200), a
assert a["body"] == sys.argv[2] and a["webhook_id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"
assert a["webhook_timestamp"] == "1614265330"
assert a["headers"]["content-type"] == "application/json"
assert b["headers"]["x-mixed-case"] == "Yes" and b["path"] == "/odd/path"
assert b["webhook_id"] is None
assert b["body"] == '\x01\ufffd "quoted" \\ tab\there \u00e9\n', repr(b["body"])
EOF
}
check "jsonl lines parse and carry all fields" check_jsonl

# --- statuses and failures -----------------------------------------------
start failfirst --fail-first 2 --quiet
codes="$(post "" ) $(post "") $(post "")"
check "--fail-first 2 gives 500 500 200" eq "$codes" "500 500 200"
stop "$PID"

start retry --fail-first 1 --retry-after 7 --fail-status 503 --quiet
hdrs_fail=$(curl -s --max-time 10 -D - -o /dev/null --data-binary x "http://127.0.0.1:$PORT/")
hdrs_ok=$(curl -s --max-time 10 -D - -o /dev/null --data-binary x "http://127.0.0.1:$PORT/")
check "--fail-status 503 is used" grep -q '^HTTP/1.1 503' <<<"$hdrs_fail"
check "--retry-after header on failure" grep -qi '^Retry-After: 7' <<<"$hdrs_fail"
check "no Retry-After on success" bash -c '! grep -qi "^Retry-After" <<<"$1"' _ "$hdrs_ok"
stop "$PID"

start every --fail-every 2 --quiet
codes="$(post "") $(post "") $(post "") $(post "")"
check "--fail-every 2 fails every second delivery" eq "$codes" "200 500 200 500"
stop "$PID"

start gone --status 410 --quiet
check "--status 410" eq "$(post "")" 410
resp=$(curl -s --max-time 10 --data-binary x "http://127.0.0.1:$PORT/")
check "failure body is {\"ok\":false}" eq "$resp" '{"ok":false}'
stop "$PID"

# --- protocol ------------------------------------------------------------
start proto --quiet --stats-file "$TMP/proto.stats"
check "GET answers 405" eq "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")" 405
check "PUT answers 405" eq "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X PUT --data-binary x "http://127.0.0.1:$PORT/")" 405
check "405 names the allowed method" \
	grep -qi '^Allow: POST' <<<"$(curl -s --max-time 10 -D - -o /dev/null "http://127.0.0.1:$PORT/")"
head -c 1048576 /dev/zero | tr '\0' a >"$TMP/1mib"
printf b >>"$TMP/1mib.plus" && cat "$TMP/1mib" >>"$TMP/1mib.plus"
check "body of exactly 1 MiB is accepted" eq "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' --data-binary @"$TMP/1mib" "http://127.0.0.1:$PORT/")" 200
check "body over 1 MiB answers 413" eq "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' --data-binary @"$TMP/1mib.plus" "http://127.0.0.1:$PORT/")" 413
resp=$(curl -s --max-time 10 --data-binary x "http://127.0.0.1:$PORT/")
check "success body is {\"ok\":true}" eq "$resp" '{"ok":true}'
conns=$(curl -s --max-time 10 -o /dev/null -o /dev/null -w '%{num_connects} ' \
	--data-binary x "http://127.0.0.1:$PORT/a" "http://127.0.0.1:$PORT/b")
check "keep-alive reuses the connection" eq "$conns" "1 0 "
check "listens on 127.0.0.1 only" \
	grep -qi "^ *[0-9]*: 0100007F:$(printf '%04X' "$PORT") 00000000:0000 0A" /proc/net/tcp
sleep 0.5
check "stats file is refreshed while running" grep -q '^received=8 valid=0 invalid=0 missing=0 first_at=1[0-9]*\.[0-9]\{6\} last_at=' "$TMP/proto.stats"
stop "$PID"

# --- lifecycle -----------------------------------------------------------
start bounded --max-requests 3 --quiet
codes="$(post "") $(post "") $(post "")"
for i in $(seq 50); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
check "--max-requests 3 answers all three" eq "$codes" "200 200 200"
check "--max-requests exits by itself" bash -c "! kill -0 $PID 2>/dev/null"
wait "$PID"
check "--max-requests exits 0" [ $? -eq 0 ]

start slow --delay 1000 --quiet
t0=$(date +%s%N)
post "" >"$TMP/slow.1" &
c1=$!
post "" >"$TMP/slow.2" &
c2=$!
wait "$c1" "$c2"
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
check "--delay holds each answer" [ "$elapsed_ms" -ge 950 ]
check "--delay does not serialize connections (${elapsed_ms} ms for two)" [ "$elapsed_ms" -lt 1800 ]
check "delayed requests still succeed" eq "$(cat "$TMP/slow.1" "$TMP/slow.2")" 200200
stop "$PID"

"$BIN" --no-such-option >/dev/null 2>&1
check "unknown option exits 2" [ $? -eq 2 ]
"$BIN" --secret 'whsec_!!!' >/dev/null 2>&1
check "malformed secret exits 2" [ $? -eq 2 ]
"$BIN" --status 99 >/dev/null 2>&1
check "out-of-range status exits 2" [ $? -eq 2 ]

echo "1..$T"
[ "$FAILED" -eq 0 ]
