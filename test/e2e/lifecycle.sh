#!/usr/bin/env bash
# test/e2e/lifecycle.sh - workers come and go with the extension and the
# database: two databases served at once, DROP EXTENSION stops only that
# database's worker, CREATE EXTENSION brings it back, DROP DATABASE is not
# blocked by the worker, a reload does not drop a request in flight, and
# pg_stat_activity names the processes.
# Receiver ports: 18950 (database A), 18951 (database B).
source "$(dirname "$0")/lib.sh"
e2e_require_cluster

PA=18950
PB=18951
A=e2e_life_a
B=e2e_life_b
plan 34

setup_db life_a
setup_db life_b
guc allowed_networks '127.0.0.1/32'

# webhook_in DB PORT : a webhook for page.updated in DB; prints its id
webhook_in() {
	qq "$1" "SELECT webhooks.enable(); SELECT webhooks.create_webhook('life', '$(url "$2")', '{page.updated}')" | tail -1
}
# fire_in DB TAG : one event; prints its id
fire_in() {
	qq "$1" "SELECT webhooks.emit('page.updated', jsonb_build_object('id', 1, 'title', '$2'), site_id => 1)"
}
# delivered DB EVENT : has that event's delivery succeeded?
delivered() {
	[ "$(qq "$1" "SELECT bool_and(status = 'succeeded') FROM webhooks.deliveries WHERE event_id = '$2'" 2>/dev/null)" = t ]
}
worker_of() { # database -> pid from pg_stat_activity, if any
	qq postgres "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
	             WHERE backend_type = 'pg-webhooks worker' AND datname = '$1'"
}
no_worker_of() { [ -z "$(worker_of "$1")" ]; }

WA=$(webhook_in $A $PA)
WB=$(webhook_in $B $PB)
start_receiver a $PA
start_receiver b $PB

# ------------------------------------------------------- two databases
EA=$(fire_in $A one)
EB=$(fire_in $B one)
wait_for 10 delivered $A "$EA"
wait_for 10 delivered $B "$EB"
ok "database A's event is delivered" delivered $A "$EA"
ok "database B's event is delivered" delivered $B "$EB"
wait_for 5 rx_at_least a 1
wait_for 5 rx_at_least b 1
ok "A's receiver got A's event and only that" bash -c "[ \$(wc -l <'$E2E_TMP/a.jsonl') -eq 1 ] && grep -q '$EA' '$E2E_TMP/a.jsonl'"
ok "B's receiver got B's event and only that" bash -c "[ \$(wc -l <'$E2E_TMP/b.jsonl') -eq 1 ] && grep -q '$EB' '$E2E_TMP/b.jsonl'"

# ---------------------------------------------------- pg_stat_activity
PIDA=$(worker_pid $A)
PIDB=$(worker_pid $B)
is "$(worker_of $A)/$(worker_of $B)" "$PIDA/$PIDB" \
	"pg_stat_activity shows one 'pg-webhooks worker' per database, the pids of worker_status()"
is "$(qq postgres "SELECT string_agg(DISTINCT application_name, ',') FROM pg_stat_activity
                   WHERE backend_type = 'pg-webhooks worker' AND datname IN ('$A', '$B')")" "pg-webhooks worker" \
	"the workers' application_name is 'pg-webhooks worker'"
is "$(qq postgres "SELECT count(*) || ' ' || string_agg(application_name, ',') FROM pg_stat_activity
                   WHERE backend_type = 'pg-webhooks launcher'")" "1 pg-webhooks launcher" \
	"one 'pg-webhooks launcher', application_name 'pg-webhooks launcher'"
is "$(qq postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg-webhooks worker'
                   AND datname IN ('postgres', 'template1')")" 0 \
	"no worker for databases without the extension"

# ------------------------------------------------------ DROP EXTENSION
qq $A "DROP EXTENSION webhooks CASCADE" >/dev/null 2>&1
ok "DROP EXTENSION webhooks succeeds while A's worker runs" [ $? -eq 0 ]
wait_for 5 no_worker_of $A
ok "A's worker exits within 5 s (no 'pg-webhooks worker' for A in pg_stat_activity)" no_worker_of $A
ok "A's worker pid $PIDA is gone" bash -c "! kill -0 $PIDA 2>/dev/null"
log_says_stopping() { new_log | grep -q "worker for database \"$A\" is stopping: the extension is not installed"; }
ok "server.log says why A's worker stopped" log_says_stopping
is "$(worker_of $B)" "$PIDB" "B's worker is untouched"
EB2=$(fire_in $B two)
wait_for 10 delivered $B "$EB2"
ok "B keeps delivering" delivered $B "$EB2"
sleep 1
ok "A still has no worker a second later (the launcher does not restart it)" no_worker_of $A

# ---------------------------------------------------- CREATE EXTENSION
qq $A "CREATE EXTENSION webhooks" >/dev/null
wait_for 5 worker_running $A
ok "CREATE EXTENSION again: A's worker is back within 5 s" worker_running $A
is "$(worker_of $A)" "$(worker_pid $A)" "pg_stat_activity agrees"
webhook_in $A $PA >/dev/null
EA2=$(fire_in $A three)
wait_for 10 delivered $A "$EA2"
ok "A delivers again" delivered $A "$EA2"

# ----------------------------------------- RENAME and TEMPLATE need A alone
OUT=$(qq postgres "ALTER DATABASE $A RENAME TO e2e_life_a2" 2>&1)
ok "ALTER DATABASE ... RENAME while A's worker runs succeeds" [ $? -eq 0 ]
[ -n "$OUT" ] && diag "$OUT"
E2E_DATABASES+=(e2e_life_a2)
wait_for 5 worker_running e2e_life_a2
ok "the renamed database gets its worker back within 5 s" worker_running e2e_life_a2
qq postgres "ALTER DATABASE e2e_life_a2 RENAME TO $A" >/dev/null 2>&1
wait_for 5 worker_running $A
guc launcher_naptime 1s
OUT=$(qq postgres "CREATE DATABASE e2e_life_t TEMPLATE $A" 2>&1)
ok "CREATE DATABASE ... TEMPLATE A while A's worker runs succeeds" [ $? -eq 0 ]
[ -n "$OUT" ] && diag "$OUT"
E2E_DATABASES+=(e2e_life_t)
wait_for 5 worker_running e2e_life_t
ok "the copy (extension included) gets a worker within launcher_naptime" worker_running e2e_life_t
wait_for 5 worker_running $A
ok "A's worker is back after the copy" worker_running $A
EA3=$(fire_in $A four)
wait_for 10 delivered $A "$EA3"
ok "A delivers after RENAME and TEMPLATE" delivered $A "$EA3"
qq postgres "DROP DATABASE e2e_life_t WITH (FORCE)" >/dev/null 2>&1
guc_reset launcher_naptime

# ------------------------------------------- reload with a request in flight
stop_receiver b
start_receiver bslow $PB --delay 3000
EB3=$(fire_in $B slow)
wait_for 5 grep -q "$EB3" "$E2E_TMP/bslow.jsonl"
ok "a slow request is in flight" grep -q "$EB3" "$E2E_TMP/bslow.jsonl"
guc timeout 9s
guc max_connections 8
wait_for 10 bash -c "[ -n \"\$(psql -X -At -d $B -c \"SELECT 1 FROM webhooks.deliveries WHERE event_id = '$EB3' AND status <> 'pending'\")\" ]"
is "$(qq $B "SELECT status || ' ' || attempts || ' ' || last_status FROM webhooks.deliveries WHERE event_id = '$EB3'")" \
	"succeeded 1 200" "reloading webhooks.timeout and max_connections does not drop the request in flight"
ok "the request took the receiver's 3 s (it really was in flight across the reload)" \
	bash -c "[ \"\$(psql -X -At -d $B -c \"SELECT bool_and(duration_ms >= 2900) FROM webhooks.attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id WHERE d.event_id = '$EB3'\")\" = t ]"
is "$(worker_pid $B)" "$PIDB" "the reload did not restart B's worker"

# ------------------------------------------------------- DROP DATABASE
ok "B's worker runs before DROP DATABASE" worker_running $B
START=$(date +%s%N)
OUT=$(timeout 15 psql -X -q -d postgres -c "DROP DATABASE $B" 2>&1)
RC=$?
MS=$(( ($(date +%s%N) - START) / 1000000 ))
diag "DROP DATABASE $B took $MS ms${OUT:+: $OUT}"
ok "DROP DATABASE of a database whose worker runs succeeds" [ $RC -eq 0 ]
ok "... within 10 s, without 'being accessed by other users'" \
	bash -c "[ $MS -lt 10000 ] && ! grep -q 'being accessed by other users' <<<'$OUT'"
ok "B's worker is gone" bash -c "[ -z \"\$(psql -X -At -d postgres -c \"SELECT 1 FROM pg_stat_activity WHERE pid = $PIDB\")\" ]"
# The same again a few times (the race below is timing dependent).
for _ in 1 2 3 4 5; do
	setup_db life_c >/dev/null
	psql -X -q -d postgres -c "DROP DATABASE e2e_life_c" >/dev/null 2>&1
	sleep 0.2
done
sleep 1
dropped_db_fatal() { new_log | grep -E 'FATAL: +database [0-9]+ does not exist'; }
FATAL=$(dropped_db_fatal)
ok "the launcher does not start a worker for the dropped database (no FATAL in server.log)" [ -z "$FATAL" ]
[ -n "$FATAL" ] && diag "$FATAL"

check_no_crash
finish
