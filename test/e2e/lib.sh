#!/usr/bin/env bash
# test/e2e/lib.sh - shared helpers for the end-to-end tests (sourced, not run).
#
# Every script in test/e2e/ gets a running cluster from the environment
# (PGHOST, PGPORT, PGUSER=postgres, WEBHOOKS_CLUSTER_DIR, as test/run sets
# them), makes its own database, its own receivers on its own ports, and
# undoes everything on exit: receivers stopped by pid, webhooks.* settings
# reset, database dropped.
#
#   plan N                          TAP plan (finish checks it was kept)
#   ok DESC CMD...                  one test from a command's exit status
#   is GOT WANT DESC                one test comparing two strings
#   skip REASON                     a skipped test
#   TODO=reason ok ...              a known bug: reported, not counted as a failure
#   diag TEXT... | diag             TAP comments
#   finish                          exit status from the results
#   q SQL / qq DB SQL               psql -Atq in $DB / in DB, ON_ERROR_STOP
#   sql_true SQL                    does SQL (in $DB) return t?
#   wait_for SECONDS CMD...         run CMD every 0.1 s until it succeeds
#   wait_sql SECONDS SQL            wait_for sql_true SQL
#   setup_db NAME                   createdb e2e_NAME + CREATE EXTENSION + wait for the
#                                   worker; the first one becomes $DB; dropped on exit
#   worker_pid [DB] / worker_running [DB]
#   guc NAME VALUE / guc_reset NAME ALTER SYSTEM (RE)SET webhooks.NAME + reload; all
#                                   settings touched are reset on exit
#   start_receiver TAG PORT ARGS... receiver/webhooks-receiver --jsonl $E2E_TMP/TAG.jsonl
#   stop_receiver TAG / rx_count TAG
#   rx_load TAG                     the receiver's JSONL into e2e.rx (src, n, j jsonb)
#   url PORT                        http://127.0.0.1:PORT/hook
#   delivery_of EVENT_ID            the event's delivery id, once fanned out
#   attempt_summary DELIVERY_ID     "500,500,200" (http_status or "error" per attempt)
#   new_log                         server.log lines written since the script started
#   check_no_crash                  one test: no server process died of a signal
#   E2E_PIDS+=(pid)                 background helpers to stop on exit
#
# E2E_KEEP=1 keeps the databases, settings and $E2E_TMP for a post-mortem.

# `prove test/e2e/*.sh` also picks up this file: run directly, it is a
# skipped test rather than a failure.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "1..0 # SKIP lib.sh is the helper library of the e2e scripts, not a test"
	exit 0
fi

set -u
set -o pipefail

E2E_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RECEIVER_BIN=${RECEIVER_BIN:-$E2E_TOP/receiver/webhooks-receiver}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"

E2E_TMP=$(mktemp -d /tmp/webhooks-e2e.XXXXXX)
chmod 755 "$E2E_TMP"
T=0
FAILED=0
PLANNED=
DB=
E2E_DATABASES=()
E2E_GUCS=()
declare -A RX_PID=()
E2E_PIDS=()
E2E_CLEANUP_HOOKS=()
E2E_START=$(date +%s.%N)

# --------------------------------------------------------------------- TAP

plan() {
	PLANNED=$1
	echo "1..$1"
}

diag() {
	if [ $# -gt 0 ]; then
		printf '%s\n' "$@" | sed 's/^/# /'
	else
		sed 's/^/# /'
	fi
}

# What a failing test prints: the newest deliveries and the server log tail.
fail_diag() {
	if [ -n "$DB" ] && psql -X -d "$DB" -c 'select 1' >/dev/null 2>&1; then
		diag "delivery_log of $DB (newest 8):"
		psql -X -d "$DB" -P pager=off -c "SELECT id, event_type, webhook_id, status, attempts, http_status,
		        left(error, 110) AS error, attempt_history::text AS history
		    FROM webhooks.delivery_log LIMIT 8" 2>&1 | cut -c1-400 | diag
	fi
	if [ -n "${WEBHOOKS_CLUSTER_DIR:-}" ] && [ -r "$WEBHOOKS_CLUSTER_DIR/server.log" ]; then
		diag "tail of $WEBHOOKS_CLUSTER_DIR/server.log:"
		tail -n 15 "$WEBHOOKS_CLUSTER_DIR/server.log" | diag
	fi
}

# ok DESC CMD... ; set TODO="reason" around it for a known bug
ok() {
	local desc=$1
	shift
	T=$((T + 1))
	if "$@"; then
		echo "ok $T - $desc${TODO:+ # TODO $TODO}"
	else
		echo "not ok $T - $desc${TODO:+ # TODO $TODO}"
		[ -n "${TODO:-}" ] || FAILED=$((FAILED + 1))
		fail_diag
	fi
}

is() {
	local got=$1 want=$2 desc=$3
	T=$((T + 1))
	if [ "$got" = "$want" ]; then
		echo "ok $T - $desc${TODO:+ # TODO $TODO}"
	else
		echo "not ok $T - $desc${TODO:+ # TODO $TODO}"
		[ -n "${TODO:-}" ] || FAILED=$((FAILED + 1))
		diag "got:  '$got'" "want: '$want'"
		fail_diag
	fi
}

skip() {
	T=$((T + 1))
	echo "ok $T # SKIP $1"
}

finish() {
	local elapsed
	elapsed=$(awk -v a="$E2E_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	diag "$(basename "$0"): $T tests, $FAILED failed, ${elapsed}s"
	if [ -n "$PLANNED" ] && [ "$T" -ne "$PLANNED" ]; then
		diag "planned $PLANNED tests but ran $T"
		exit 1
	fi
	[ "$FAILED" -eq 0 ] && exit 0
	exit 1
}

# ------------------------------------------------------------------ waits

# wait_for SECONDS CMD... : run CMD every 0.1 s until it succeeds.
wait_for() {
	local deadline=$(( $(date +%s%N) + ${1%.*} * 1000000000 ))
	shift
	while :; do
		"$@" && return 0
		[ "$(date +%s%N)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

# ------------------------------------------------------------------- SQL

q() {
	psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" -c "$1"
}

qq() {
	psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

sql_true() {
	[ "$(q "$1" 2>/dev/null)" = t ]
}

# wait_sql SECONDS SQL : until SQL (in $DB) returns t
wait_sql() {
	wait_for "$1" sql_true "$2"
}

worker_pid() {
	qq "${1:-$DB}" "SELECT worker_pid FROM webhooks.worker_status()" 2>/dev/null
}

worker_running() {
	[ -n "$(worker_pid "${1:-$DB}")" ]
}

# setup_db NAME : a fresh database e2e_NAME with the extension and a running
# worker; sets DB.  Also a schema e2e for what the test loads.
setup_db() {
	local name="e2e_$1"
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1
	if ! createdb "$name"; then
		echo "Bail out! createdb $name failed"
		exit 1
	fi
	E2E_DATABASES+=("$name")
	[ -n "$DB" ] || DB=$name
	if ! qq "$name" "CREATE EXTENSION webhooks; CREATE SCHEMA e2e;
	                CREATE TABLE e2e.rx (src text NOT NULL, n bigint NOT NULL, j jsonb NOT NULL);
	                CREATE TABLE e2e.marks (name text PRIMARY KEY, at timestamptz, val text)"; then
		echo "Bail out! CREATE EXTENSION webhooks failed in $name"
		exit 1
	fi
	if ! wait_for 10 worker_running "$name"; then
		diag "no worker for $name after 10 s"
		fail_diag
		return 1
	fi
	return 0
}

# guc NAME VALUE : ALTER SYSTEM SET webhooks.NAME = VALUE, reload, and wait
# until new sessions see the reload (the worker gets the same SIGHUP).
guc() {
	local name=$1 value=$2 before
	before=$(qq postgres "SELECT pg_conf_load_time()")
	qq postgres "ALTER SYSTEM SET webhooks.$name = '$value'" || return 1
	qq postgres "SELECT pg_reload_conf()" >/dev/null
	[[ " ${E2E_GUCS[*]} " == *" $name "* ]] || E2E_GUCS+=("$name")
	wait_for 10 conf_reloaded_since "$before"
	sleep 0.2                   # the worker reloads on its next wake-up
}

guc_reset() {
	local name=$1 before
	before=$(qq postgres "SELECT pg_conf_load_time()")
	qq postgres "ALTER SYSTEM RESET webhooks.$name" || return 1
	qq postgres "SELECT pg_reload_conf()" >/dev/null
	wait_for 10 conf_reloaded_since "$before"
	sleep 0.2
}

conf_reloaded_since() {
	[ "$(qq postgres "SELECT pg_conf_load_time() > '$1'::timestamptz" 2>/dev/null)" = t ]
}

# ------------------------------------------------------------- receivers

# start_receiver TAG PORT ARGS... : waits at most 5 s until it listens.
# Appends to $E2E_TMP/TAG.jsonl (restarting under the same tag keeps it).
start_receiver() {
	local tag=$1 port=$2
	shift 2
	if [ ! -x "$RECEIVER_BIN" ]; then
		echo "Bail out! $RECEIVER_BIN is not built (make -C receiver)"
		exit 1
	fi
	"$RECEIVER_BIN" --port "$port" --jsonl "$E2E_TMP/$tag.jsonl" \
		--ready-file "$E2E_TMP/$tag.ready" --stats-file "$E2E_TMP/$tag.stats" --quiet "$@" \
		>>"$E2E_TMP/$tag.out" 2>>"$E2E_TMP/$tag.err" &
	RX_PID[$tag]=$!
	touch "$E2E_TMP/$tag.jsonl"
	if ! wait_for 5 test -s "$E2E_TMP/$tag.ready"; then
		diag "receiver $tag on port $port did not start:"
		diag < "$E2E_TMP/$tag.err"
		echo "Bail out! cannot start the receiver on port $port"
		exit 1
	fi
}

stop_receiver() {
	local tag=$1 pid=${RX_PID[$1]:-}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	wait_for 5 bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	unset "RX_PID[$tag]"
	return 0
}

# Number of requests a receiver logged so far.
rx_count() {
	local f="$E2E_TMP/$1.jsonl"
	[ -f "$f" ] || { echo 0; return; }
	wc -l <"$f" | tr -d ' '
}

# rx_at_least TAG N : has the receiver logged N requests yet?  (For
# wait_for: the count must be read at each try, not once when called.)
rx_at_least() {
	[ "$(rx_count "$1")" -ge "$2" ]
}

# rx_load TAG : (re)load a receiver's JSONL into e2e.rx of $DB as src TAG.
rx_load() {
	local tag=$1 f="$E2E_TMP/$1.jsonl"
	[ -f "$f" ] || : >"$f"
	psql -X -q -v ON_ERROR_STOP=1 -d "${2:-$DB}" >/dev/null <<-EOF
		BEGIN;
		DELETE FROM e2e.rx WHERE src = '$tag';
		CREATE TEMP TABLE rx_lines (line text) ON COMMIT DROP;
		\\copy rx_lines FROM '$f' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
		INSERT INTO e2e.rx SELECT '$tag', (line::jsonb->>'n')::bigint, line::jsonb FROM rx_lines;
		COMMIT;
	EOF
}

# The URL of a receiver port on 127.0.0.1.
url() {
	echo "http://127.0.0.1:$1/hook"
}

# Takes a psql timestamp mark: later tests read e2e.marks.
mark() {
	q "INSERT INTO e2e.marks VALUES ('$1', clock_timestamp(), ${2:-NULL})
	   ON CONFLICT (name) DO UPDATE SET at = excluded.at, val = excluded.val" >/dev/null
}

# The delivery of an event (to its only webhook), once the worker fanned it
# out; waits up to 10 s, prints nothing if there is none.
# The id of the delivery of event $1 whose first attempt is in flight (its
# row in webhooks.deliveries is written with the outcome); waits up to 10 s.
inflight_delivery_of() {
	local q_ids="SELECT p.d FROM webhooks.inflight_first_attempts f,
	                    unnest(f.delivery_ids, f.event_ids) AS p(d, e) WHERE p.e = '$1'"
	wait_sql 10 "SELECT EXISTS ($q_ids)" && q "SELECT min(d) FROM ($q_ids) s"
}

delivery_of() {
	wait_sql 10 "SELECT EXISTS (SELECT 1 FROM webhooks.deliveries WHERE event_id = '$1')" &&
		q "SELECT min(id) FROM webhooks.deliveries WHERE event_id = '$1'"
}

# "http_status or error-prefix" of every attempt of a delivery, in order.
attempt_summary() {
	q "SELECT string_agg(coalesce(http_status::text, 'error'), ',' ORDER BY attempt, id)
	   FROM webhooks.attempts WHERE delivery_id = $1"
}

# Lines that server.log got since this script started.
E2E_LOG=${WEBHOOKS_CLUSTER_DIR:+$WEBHOOKS_CLUSTER_DIR/server.log}
E2E_LOG_START=0
[ -n "$E2E_LOG" ] && [ -r "$E2E_LOG" ] && E2E_LOG_START=$(wc -c <"$E2E_LOG")
new_log() {
	[ -n "$E2E_LOG" ] && [ -r "$E2E_LOG" ] || return 0
	tail -c +"$((E2E_LOG_START + 1))" "$E2E_LOG"
}

# ok-test: no server process died of a signal other than the SIGKILLs a
# test sends itself (those are "signal 9").
check_no_crash() {
	local crashes
	crashes=$(new_log | grep -E 'terminated by signal|PANIC|was terminated by exception' | grep -v 'signal 9:')
	T=$((T + 1))
	if [ -z "$crashes" ]; then
		echo "ok $T - no server process crashed during $(basename "$0")"
	else
		echo "not ok $T - no server process crashed during $(basename "$0")"
		FAILED=$((FAILED + 1))
		diag "$crashes"
		new_log | grep -B3 -A3 -E 'terminated by signal' | grep -v 'signal 9:' | head -20 | diag
	fi
}

# --------------------------------------------------------------- cleanup

e2e_cleanup() {
	local tag name pid hook
	if [ -n "${E2E_KEEP:-}" ]; then
		echo "# E2E_KEEP: leaving databases ${E2E_DATABASES[*]}, settings and $E2E_TMP" >&2
		for tag in "${!RX_PID[@]}"; do stop_receiver "$tag"; done
		return
	fi
	for hook in "${E2E_CLEANUP_HOOKS[@]}"; do
		"$hook" || true
	done
	for tag in "${!RX_PID[@]}"; do
		stop_receiver "$tag"
	done
	for pid in "${E2E_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ ${#E2E_GUCS[@]} -gt 0 ]; then
		for name in "${E2E_GUCS[@]}"; do
			qq postgres "ALTER SYSTEM RESET webhooks.$name" >/dev/null 2>&1
		done
		qq postgres "SELECT pg_reload_conf()" >/dev/null 2>&1
	fi
	for name in "${E2E_DATABASES[@]}"; do
		psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 ||
			echo "# could not drop database $name"
	done
	rm -rf "$E2E_TMP"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

# The cluster from the environment must be there.
e2e_require_cluster() {
	if [ -z "${PGHOST:-}" ] || [ -z "${PGPORT:-}" ] || ! psql -X -q -d postgres -c 'select 1' >/dev/null 2>&1; then
		echo "Bail out! no cluster: run through test/run (PGHOST/PGPORT/WEBHOOKS_CLUSTER_DIR)"
		exit 1
	fi
	if [ "$(qq postgres "SELECT current_setting('shared_preload_libraries') ~ 'webhooks'")" != t ]; then
		echo "Bail out! webhooks is not in shared_preload_libraries"
		exit 1
	fi
}
