#!/usr/bin/env bash
# Housekeeping: finished deliveries, their attempts and events are pruned
# after webhooks.retention while pending ones stay; the worker's writes
# reach the statistics system (so autovacuum sees them); the claim and
# dispatch queries find their rows through indexes, not sequential scans.
source "$(dirname "$0")/lib.sh"

plan 9
setup_db housekeeping || finish
guc allowed_networks '127.0.0.1/32'
guc retry_schedule '1h'
start_receiver ok 18970

q "SELECT webhooks.enable()" >/dev/null 2>&1
q "SELECT webhooks.create_webhook('ok', '$(url 18970)', '{*}', sites => '{1}')" >/dev/null
# nothing listens on 18979: its delivery fails and waits an hour for its retry
q "SELECT webhooks.create_webhook('down', '$(url 18979)', '{*}', sites => '{2}')" >/dev/null
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('n', g), site_id => 1)) FROM generate_series(1, 300) g" >/dev/null
q "SELECT webhooks.emit('page.updated', '{\"n\": 0}', site_id => 2)" >/dev/null

ok "300 deliveries succeed and one waits for its retry" \
	wait_sql 20 "SELECT count(*) FILTER (WHERE status = 'succeeded') = 300
	             AND count(*) FILTER (WHERE status = 'pending') = 1 FROM webhooks.deliveries"

# the statistics system sees the worker's writes (autovacuum relies on them)
ok "pg_stat_user_tables counts the worker's inserts into deliveries and attempts" \
	wait_sql 15 "SELECT (SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'webhooks.deliveries'::regclass) >= 301 AND
	             (SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'webhooks.attempts'::regclass) >= 301"

# the queries the worker runs use the indexes made for them
q "ANALYZE webhooks.deliveries; ANALYZE webhooks.event_store; ANALYZE webhooks.dispatch_queue" >/dev/null
PLAN=$(q "EXPLAIN SELECT id FROM webhooks.deliveries
          WHERE status = 'pending' AND next_attempt_at <= now()
          ORDER BY next_attempt_at LIMIT 1000 FOR UPDATE SKIP LOCKED")
diag "$PLAN"
ok "claiming due deliveries uses deliveries_due_idx" grep -q "deliveries_due_idx" <<<"$PLAN"
# (the queue is nearly always empty or small: the worker plans with
# enable_seqscan off, as here, so its plan does not flip with the statistics)
PLAN=$(q "SET enable_seqscan = off; EXPLAIN SELECT first_event FROM webhooks.dispatch_queue ORDER BY first_event LIMIT 31")
diag "$PLAN"
ok "dispatching new events uses dispatch_queue_pkey" grep -q "dispatch_queue_pkey" <<<"$PLAN"

# pruning: only finished deliveries, then events nothing refers to
guc retention '2s'
ok "finished deliveries are pruned after webhooks.retention" \
	wait_sql 20 "SELECT count(*) = 0 FROM webhooks.deliveries WHERE status = 'succeeded'"
ok "their attempts are pruned with them" \
	wait_sql 10 "SELECT count(*) = 1 FROM webhooks.attempts"
ok "their events are pruned once no delivery refers to them" \
	wait_sql 10 "SELECT count(*) = 1 FROM webhooks.events"
ok "the pending delivery, its attempt and its event stay" \
	sql_true "SELECT count(*) = 1 FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
	          WHERE d.status = 'pending'"
guc_reset retention
check_no_crash
finish
