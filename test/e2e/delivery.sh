#!/usr/bin/env bash
# test/e2e/delivery.sh - CMS changes reach a real receiver, signed, with
# every header, the exact body, and the bookkeeping to match; test
# notifications while switched off; commit-to-receipt latency.
# Receiver port: 18901.
source "$(dirname "$0")/lib.sh"
e2e_require_cluster

PORT=18901
plan 37

setup_db delivery
guc allowed_networks '127.0.0.1/32'

if ! psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$E2E_TOP/examples/cms.sql" >"$E2E_TMP/cms.log" 2>&1; then
	diag <"$E2E_TMP/cms.log"
	echo "Bail out! examples/cms.sql failed"
	exit 1
fi

WH=$(q "SELECT webhooks.create_webhook('e2e all', '$(url $PORT)', '{*}',
            headers => '{\"X-Env\": \"test\", \"Authorization\": \"Bearer t\"}')" 2>/dev/null)
q "SELECT webhooks.enable()" >/dev/null
SECRET=$(q "SELECT secret FROM webhooks.webhooks WHERE id = $WH")
start_receiver main $PORT --secret "$SECRET"

# Every one of the 50 event types, as examples/fire_all_events.sql fires them.
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$E2E_TOP/examples/fire_all_events.sql" >"$E2E_TMP/fire.log" 2>&1
ok "examples/fire_all_events.sql runs" [ $? -eq 0 ]
NEVENTS=$(q "SELECT count(*) FROM webhooks.events")
diag "$NEVENTS events queued"
ok "the CMS changes queued events for all 50 event types" \
	sql_true "SELECT count(DISTINCT type) = 50 FROM webhooks.events"

wait_sql 20 "SELECT count(*) = $NEVENTS FROM webhooks.deliveries WHERE status = 'succeeded'"
ok "every event's delivery succeeded within 20 s" \
	sql_true "SELECT count(*) = $NEVENTS AND bool_and(status = 'succeeded') FROM webhooks.deliveries"
wait_for 5 rx_at_least main "$NEVENTS"
rx_load main

is "$(q "SELECT count(*) FROM e2e.rx")" "$NEVENTS" "the receiver got exactly one request per event"
is "$(q "SELECT count(*) FROM webhooks.events e
         WHERE NOT EXISTS (SELECT 1 FROM e2e.rx r WHERE r.j->>'webhook_id' = e.id::text)")" 0 \
	"every event id arrived as a webhook-id"
is "$(q "SELECT string_agg(DISTINCT j->>'signature', ',') FROM e2e.rx")" valid \
	"the receiver found every signature valid"
is "$(q "SELECT string_agg(DISTINCT (j->>'method') || ' ' || (j->>'path'), ',') FROM e2e.rx")" "POST /hook" \
	"deliveries are POSTs to the webhook's path"
is "$(q "SELECT string_agg(DISTINCT j->'headers'->>'content-type', ',') FROM e2e.rx")" application/json \
	"content-type is application/json"
ok "user-agent starts with pg-webhooks/" \
	sql_true "SELECT bool_and(j->'headers'->>'user-agent' LIKE 'pg-webhooks/_%') FROM e2e.rx"
diag "user-agent: $(q "SELECT j->'headers'->>'user-agent' FROM e2e.rx LIMIT 1")"
ok "webhook-id equals the payload's \"id\"" \
	sql_true "SELECT bool_and(j->>'webhook_id' = (j->>'body')::jsonb->>'id') FROM e2e.rx"
ok "webhook-timestamp is within 60 s of now" \
	sql_true "SELECT bool_and(abs((j->>'webhook_timestamp')::bigint - extract(epoch FROM now())) < 60) FROM e2e.rx"
ok "custom headers X-Env and Authorization arrive" \
	sql_true "SELECT bool_and(j->'headers'->>'x-env' = 'test' AND j->'headers'->>'authorization' = 'Bearer t') FROM e2e.rx"
is "$(q "SELECT count(*) FROM e2e.rx r JOIN webhooks.events e ON e.id::text = r.j->>'webhook_id'
         WHERE r.j->>'body' = e.payload::text")" "$NEVENTS" \
	"every body equals webhooks.events.payload byte for byte"
is "$(q "SELECT count(*) FROM e2e.rx
         WHERE webhooks.sign('$SECRET', j->>'webhook_id', (j->>'webhook_timestamp')::bigint, j->>'body')
               = j->'headers'->>'webhook-signature'")" "$NEVENTS" \
	"webhook-signature equals webhooks.sign(secret, id, timestamp, body)"
is "$(q "SELECT count(*) FROM webhooks.attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
         WHERE a.attempt = 1 AND a.http_status = 200 AND a.duration_ms > 0 AND a.error IS NULL")" "$NEVENTS" \
	"one attempt per delivery: HTTP 200 with a duration"
is "$(q "SELECT count(*) FROM webhooks.attempts")" "$NEVENTS" "no other attempts"
is "$(q "SELECT response_body FROM webhooks.attempts LIMIT 1")" '{"ok":true}' \
	"the response body is kept"
is "$(q "SELECT last_status FROM webhooks.active WHERE id = $WH")" ok "webhooks.active says ok"
is "$(q "SELECT succeeded || '/' || failed || '/' || pending FROM webhooks.webhook_stats WHERE webhook_id = $WH")" \
	"$NEVENTS/0/0" "webhook_stats counts every delivery as succeeded"
ok "the dispatch queue is empty once every event has its deliveries" sql_true "SELECT NOT EXISTS (SELECT 1 FROM webhooks.dispatch_queue)"
is "$(q "SELECT count(*) || '/' || count(DISTINCT id) FROM webhooks.event_store")" "$NEVENTS/$NEVENTS" \
	"every event moved to webhooks.event_store, once"
ok "no first attempt is left in flight once every outcome is recorded" \
	sql_true "SELECT NOT EXISTS (SELECT 1 FROM webhooks.inflight_first_attempts)"

# ---------------------------------------------------------------------
# A test notification while the account switch is off.
q "SELECT webhooks.disable()" >/dev/null
q "UPDATE cms.sites SET name = 'Switched off' WHERE id = 1" >/dev/null
is "$(q "SELECT count(*) FROM webhooks.events")" "$NEVENTS" "nothing is queued while switched off"
WH2=$(q "SELECT webhooks.create_webhook('e2e test', '$(url $PORT)', '{page.published,site.*}',
             secret => '$SECRET')" 2>/dev/null)
BEFORE=$(rx_count main)
TD=$(q "SELECT webhooks.send_test($WH2)")
wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = $TD"
wait_for 5 rx_at_least main $((BEFORE + 1))
rx_load main
TEST_ROW="SELECT j FROM e2e.rx WHERE j->>'webhook_id' =
              (SELECT event_id::text FROM webhooks.deliveries WHERE id = $TD)"
is "$(q "SELECT (j->>'body')::jsonb->>'test' FROM ($TEST_ROW) t")" true \
	"send_test while disabled: the receiver gets \"test\": true"
is "$(q "SELECT (j->>'body')::jsonb->>'type' FROM ($TEST_ROW) t")" page.published \
	"the test notification's type is the webhook's first event type"
is "$(q "SELECT j->>'signature' FROM ($TEST_ROW) t")" valid "the test notification's signature is valid"
ok "the test notification is in delivery_log with test = true" \
	sql_true "SELECT test AND status = 'succeeded' FROM webhooks.delivery_log WHERE id = $TD"
q "SELECT webhooks.delete_webhook($WH2)" >/dev/null

# ---------------------------------------------------------------------
# Commit -> receipt latency of one event (informational; asserted < 1 s).
# Two clocks: just before COMMIT (an upper bound on the latency) and just
# after it (the next statement; the delivery can beat it, giving < 0).
q "SELECT webhooks.enable()" >/dev/null
TIMES=$(psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" <<-'EOF'
	BEGIN;
	UPDATE cms.sites SET name = 'Latency check' WHERE id = 1;
	SELECT extract(epoch FROM clock_timestamp());
	COMMIT;
	SELECT extract(epoch FROM clock_timestamp());
EOF
)
BEFORE_COMMIT=$(sed -n 1p <<<"$TIMES")
AFTER_COMMIT=$(sed -n 2p <<<"$TIMES")
EV=$(q "SELECT id FROM webhooks.events WHERE payload::jsonb->'data'->>'name' = 'Latency check'")
wait_for 5 grep -q "\"webhook_id\":\"$EV\"" "$E2E_TMP/main.jsonl"
rx_load main
LAT_MS=$(q "SELECT round((((j->>'received_at')::numeric) - ${AFTER_COMMIT:-0}) * 1000, 1)
            FROM e2e.rx WHERE j->>'webhook_id' = '$EV'")
LAT_PRE_MS=$(q "SELECT round((((j->>'received_at')::numeric) - ${BEFORE_COMMIT:-0}) * 1000, 1)
                FROM e2e.rx WHERE j->>'webhook_id' = '$EV'")
diag "commit -> receipt latency: ${LAT_MS:-none} ms after the post-COMMIT timestamp, ${LAT_PRE_MS:-none} ms after the pre-COMMIT one"
ok "commit -> receipt latency is under 1 s" \
	awk -v l="${LAT_PRE_MS:-99999}" 'BEGIN { exit !(l != "" && l < 1000) }'

# ---------------------------------------------------------------------
# A 200 KB payload full of non-ASCII, quotes, backslashes and newlines
# arrives byte for byte (and over the 1 KB Expect: 100-continue limit).
q "INSERT INTO cms.pages (site_id, title, slug, body)
   VALUES (1, 'Große Seite ☃', 'big', repeat(E'Grüße \"quoted\" back\\\\slash €😀 ñ\n\t', 5000))" >/dev/null
EV=$(q "SELECT id FROM webhooks.events WHERE type = 'page.created' AND payload::jsonb->'data'->>'slug' = 'big'")
wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE event_id = '${EV:-00000000-0000-0000-0000-000000000000}'"
wait_for 5 grep -q "\"webhook_id\":\"$EV\"" "$E2E_TMP/main.jsonl"
rx_load main
diag "large payload: $(q "SELECT octet_length(payload::text) FROM webhooks.events WHERE id = '$EV'") bytes"
is "$(q "SELECT (r.j->>'body') = e.payload::text AND r.j->>'signature' = 'valid'
         FROM e2e.rx r JOIN webhooks.events e ON e.id::text = r.j->>'webhook_id' WHERE e.id = '$EV'")" t \
	"a 200 KB non-ASCII payload arrives byte for byte with a valid signature"

# ---------------------------------------------------------------------
# One event, three webhooks (the '{*}' one and two for page.*): three
# deliveries with the same webhook-id, each signed with its own secret.
start_receiver fan1 18903
start_receiver fan2 18904
WF1=$(q "SELECT webhooks.create_webhook('fan 1', '$(url 18903)', '{page.*}')")
WF2=$(q "SELECT webhooks.create_webhook('fan 2', '$(url 18904)', '{page.*}')")
q "UPDATE cms.pages SET title = 'Fan out' WHERE slug = 'big'" >/dev/null
EV=$(q "SELECT id FROM webhooks.events WHERE type = 'page.updated' AND payload::jsonb->'data'->>'title' = 'Fan out'")
wait_sql 10 "SELECT count(*) = 3 AND bool_and(status = 'succeeded') FROM webhooks.deliveries WHERE event_id = '${EV:-00000000-0000-0000-0000-000000000000}'"
is "$(q "SELECT string_agg(webhook_id::text, ',' ORDER BY webhook_id) FROM webhooks.deliveries WHERE event_id = '$EV' AND status = 'succeeded'")" \
	"$WH,$WF1,$WF2" "an event wanted by three webhooks: one successful delivery each"
rx_load fan1
rx_load fan2
rx_load main
is "$(q "SELECT count(*) || '/' || count(DISTINCT src) FROM e2e.rx r JOIN webhooks.webhooks w
           ON w.id = CASE r.src WHEN 'main' THEN $WH WHEN 'fan1' THEN $WF1 ELSE $WF2 END
         WHERE r.j->>'webhook_id' = '$EV'
           AND r.j->'headers'->>'webhook-signature' =
               webhooks.sign(w.secret, r.j->>'webhook_id', (r.j->>'webhook_timestamp')::bigint, r.j->>'body')")" "3/3" \
	"each receiver got it once, with the same webhook-id, signed with its webhook's own secret"
q "SELECT webhooks.delete_webhook($WF1); SELECT webhooks.delete_webhook($WF2)" >/dev/null
stop_receiver fan1
stop_receiver fan2

# ---------------------------------------------------------------------
# A burst: 500 events in one transaction, each delivered exactly once.
MARK=$(q "SELECT count(*) FROM webhooks.events")
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('id', i, 'burst', true), site_id => 1))
   FROM generate_series(1, 500) i" >/dev/null
wait_sql 20 "SELECT count(*) = 500 FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
             WHERE d.status = 'succeeded' AND e.payload::jsonb->'data'->>'burst' = 'true'"
wait_for 5 rx_at_least main $((MARK + 500))
rx_load main
is "$(q "SELECT count(*) || '/' || count(DISTINCT r.j->>'webhook_id') || '/' || count(*) FILTER (WHERE r.j->>'signature' = 'valid')
         FROM e2e.rx r JOIN webhooks.events e ON e.id::text = r.j->>'webhook_id'
         WHERE e.payload::jsonb->'data'->>'burst' = 'true'")" "500/500/500" \
	"a burst of 500 events: 500 requests, 500 distinct webhook-ids, all signed validly"

# batch_size = 3: many small rounds still deliver everything.
guc batch_size 3
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('id', i, 'small_batches', true), site_id => 1))
   FROM generate_series(1, 30) i" >/dev/null
wait_sql 20 "SELECT count(*) = 30 FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
             WHERE d.status = 'succeeded' AND e.payload::jsonb->'data'->>'small_batches' = 'true'"
is "$(q "SELECT count(*) FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id
         WHERE d.status = 'succeeded' AND e.payload::jsonb->'data'->>'small_batches' = 'true'")" 30 \
	"webhooks.batch_size = 3: 30 events are all delivered"
guc_reset batch_size

# max_started_within_0_9s TAG : the most requests the receiver TAG saw
# start within 0.9 s (with answers taking 1 s: the requests in flight)
max_started_within_0_9s() {
	q "SELECT max(c) FROM (SELECT count(*) OVER (ORDER BY (j->>'received_at')::numeric
	                                            RANGE BETWEEN CURRENT ROW AND 0.9 FOLLOWING) AS c
	                     FROM e2e.rx WHERE src = '$1') w"
}

# webhooks.max_connections is PGC_SIGHUP: after a reload to 2, no more than
# 2 requests are in flight at once (6 events to a receiver taking 1 s each).
guc max_connections 2
start_receiver slow 18902 --delay 1000
WS=$(q "SELECT webhooks.create_webhook('slow', '$(url 18902)', '{page.updated}', sites => '{77}')")
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('id', i), site_id => 77))
   FROM generate_series(1, 6) i" >/dev/null
wait_sql 15 "SELECT count(*) = 6 FROM webhooks.deliveries WHERE webhook_id = $WS AND status = 'succeeded'"
rx_load slow
MAXC=$(max_started_within_0_9s slow)
diag "most requests started within 0.9 s with max_connections = 2: ${MAXC:-none}"
is "${MAXC:-none}" 2 "a reload of webhooks.max_connections = 2 limits requests in flight to 2"

# A restarted worker does use max_connections = 2; with claims queued
# ahead of the slots, 8 slow deliveries still go out 2 at a time, once each.
OLDPID=$(worker_pid)
q "SELECT pg_terminate_backend($OLDPID)" >/dev/null
wait_for 10 bash -c "p=\$(psql -X -A -t -q -d '$DB' -c 'SELECT worker_pid FROM webhooks.worker_status()' 2>/dev/null); [ -n \"\$p\" ] && [ \"\$p\" != '$OLDPID' ]"
q "DELETE FROM e2e.rx WHERE src = 'slow'" >/dev/null
: >"$E2E_TMP/slow.jsonl"
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('id', 100 + i), site_id => 77))
   FROM generate_series(1, 8) i" >/dev/null
wait_sql 20 "SELECT count(*) = 14 FROM webhooks.deliveries WHERE webhook_id = $WS AND status = 'succeeded'"
rx_load slow
MAXC=$(max_started_within_0_9s slow)
diag "after a worker restart: most requests started within 0.9 s: ${MAXC:-none}"
is "${MAXC:-none}" 2 "after a worker restart max_connections = 2 holds: 2 requests in flight at most"
is "$(q "SELECT count(*) || '/' || count(DISTINCT j->>'webhook_id') FROM e2e.rx WHERE src = 'slow'")" "8/8" \
	"the 8 queued deliveries were each sent exactly once"
guc_reset max_connections
q "SELECT pg_terminate_backend(worker_pid) FROM webhooks.worker_status()" >/dev/null

check_no_crash
finish
