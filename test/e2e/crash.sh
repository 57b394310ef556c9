#!/usr/bin/env bash
# test/e2e/crash.sh - at-least-once delivery across crashes: an immediate
# shutdown of the cluster while requests are in flight, and a SIGKILL of
# the worker alone (which makes the postmaster restart every process).
# Every event must still arrive, and the interrupted attempts are recorded.
# Receiver port: 18940.
source "$(dirname "$0")/lib.sh"
e2e_require_cluster
# shellcheck source=../../scripts/cluster.sh
source "$E2E_TOP/scripts/cluster.sh"
CLUSTER_DIR=$WEBHOOKS_CLUSTER_DIR

PORT=18940
N=20
plan 16

setup_db crash
guc allowed_networks '127.0.0.1/32'
guc retry_schedule '1s, 1s, 1s, 1s, 1s'
q "SELECT webhooks.enable()" >/dev/null
WH=$(q "SELECT webhooks.create_webhook('crash', '$(url $PORT)', '{page.updated}')")
SECRET=$(q "SELECT secret FROM webhooks.webhooks WHERE id = $WH")

cluster_up() {
	psql -X -q -d "$DB" -c 'select 1' >/dev/null 2>&1
}

# ------------------------------------------------------ immediate shutdown
start_receiver slow $PORT --delay 3000 --secret "$SECRET"
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('id', i), site_id => 1))
   FROM generate_series(1, $N) i" >/dev/null
wait_for 10 bash -c "[ \$(wc -l <'$E2E_TMP/slow.jsonl') -ge $N ]"
# in flight: first attempts (no delivery row until their outcome, ids kept in
# inflight_first_attempts)
IN_FLIGHT="SELECT unnest(delivery_ids) AS id FROM webhooks.inflight_first_attempts"
SENDING=$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM ($IN_FLIGHT) s")
NSENDING=$(q "SELECT count(*) FROM ($IN_FLIGHT) s")
diag "$NSENDING of $N deliveries in flight at the immediate shutdown"
ok "deliveries are in flight against the slow receiver (their ids in inflight_first_attempts)" [ "${NSENDING:-0}" -gt 0 ]

as_cluster_user "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate -w -t 60 stop >/dev/null
ok "pg_ctl stop -m immediate" [ $? -eq 0 ]
stop_receiver slow
start_receiver fast $PORT --secret "$SECRET"
as_cluster_user "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w -t 60 start >/dev/null
ok "the cluster starts again" [ $? -eq 0 ]

wait_for 20 cluster_up
wait_sql 20 "SELECT count(*) = $N AND bool_and(status = 'succeeded') FROM webhooks.deliveries"
is "$(q "SELECT count(*) FILTER (WHERE status = 'succeeded') || '/' || count(*) FROM webhooks.deliveries")" "$N/$N" \
	"after the restart every delivery succeeds"
rx_load slow
rx_load fast
is "$(q "SELECT count(*) FROM webhooks.events e
         WHERE NOT EXISTS (SELECT 1 FROM e2e.rx r WHERE r.j->>'webhook_id' = e.id::text)")" 0 \
	"every event id arrived at least once (the set of webhook-ids covers webhooks.events)"
is "$(q "SELECT count(*) FROM webhooks.deliveries d
         WHERE d.id = ANY ('{${SENDING}}'::bigint[])
           AND NOT EXISTS (SELECT 1 FROM e2e.rx r WHERE r.src = 'fast' AND r.j->>'webhook_id' = d.event_id::text)")" 0 \
	"every delivery in flight at the crash was sent again after the restart"
is "$(q "SELECT count(DISTINCT delivery_id) FROM webhooks.attempts
         WHERE error ~ '^interrupted' AND delivery_id = ANY ('{${SENDING}}'::bigint[])")" "$NSENDING" \
	"attempts shows 'interrupted' for each delivery that was in flight"
is "$(q "SELECT count(*) FROM webhooks.attempts WHERE error ~ '^interrupted'")" "$NSENDING" \
	"and for no other"
is "$(q "SELECT string_agg(DISTINCT j->>'signature', ',') FROM e2e.rx WHERE src = 'fast'")" valid \
	"the re-sent deliveries carry valid signatures"
log_says_resent() { new_log | grep -q 'deliveries interrupted by a restart will be sent again'; }
ok "server.log says the interrupted deliveries will be sent again" log_says_resent
stop_receiver fast

# ---------------------------------------------------- SIGKILL of the worker
start_receiver k $PORT --delay 1500 --secret "$SECRET"
q "TRUNCATE e2e.rx" >/dev/null
BEFORE=$(q "SELECT count(*) FROM webhooks.deliveries")
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('id', 100 + i), site_id => 1))
   FROM generate_series(1, 5) i" >/dev/null
wait_for 10 bash -c "[ \$(wc -l <'$E2E_TMP/k.jsonl') -ge 5 ]"
PID=$(worker_pid)
K_SENDING=$(q "SELECT count(*) FROM ($IN_FLIGHT) s")
diag "kill -9 of worker $PID with $K_SENDING deliveries in flight"
kill -KILL "$PID"
ok "kill -9 of the worker process" [ $? -eq 0 ]
sleep 0.5
wait_for 30 cluster_up
wait_for 20 bash -c "p=\$(psql -X -A -t -q -d '$DB' -c 'SELECT worker_pid FROM webhooks.worker_status()' 2>/dev/null); [ -n \"\$p\" ] && [ \"\$p\" != '$PID' ]"
NEWPID=$(worker_pid)
ok "a new worker runs after the crash restart (was $PID, now ${NEWPID:-none})" \
	bash -c "[ -n '$NEWPID' ] && [ '$NEWPID' != '$PID' ]"
wait_sql 20 "SELECT count(*) = $BEFORE + 5 AND bool_and(status = 'succeeded') FROM webhooks.deliveries"
is "$(q "SELECT count(*) FILTER (WHERE status = 'succeeded') || '/' || count(*) FROM webhooks.deliveries")" \
	"$((BEFORE + 5))/$((BEFORE + 5))" "after the worker was killed every delivery still succeeds"
rx_load k
is "$(q "SELECT count(*) FROM webhooks.events e
         WHERE NOT EXISTS (SELECT 1 FROM e2e.rx r WHERE r.j->>'webhook_id' = e.id::text)
           AND (e.payload::jsonb->'data'->>'id')::int > 100")" 0 \
	"every event fired before the kill arrived"
ok "the killed worker's in-flight deliveries are recorded as interrupted" \
	sql_true "SELECT count(*) >= $K_SENDING FROM webhooks.attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
	          JOIN webhooks.events e ON e.id = d.event_id
	          WHERE a.error ~ '^interrupted' AND (e.payload::jsonb->'data'->>'id')::int > 100"

check_no_crash
finish
