#!/usr/bin/env bash
# test/e2e/retries.sh - failures and what the worker does about them:
# 500s then success, timeouts, refused connections, Retry-After, 410 Gone,
# retries running out, redeliver, a webhook deleted with a retry pending,
# and webhooks disabled after webhooks.disable_after of failures.
# Receiver ports: 18910-18919.  Each case has its own webhook, routed by
# site id (webhooks.emit(..., site_id => N) reaches only the webhook with
# sites = {N}), so the cases of a phase run side by side.
source "$(dirname "$0")/lib.sh"
e2e_require_cluster

plan 35

setup_db retries
guc allowed_networks '127.0.0.1/32'
guc retry_schedule '1s, 1s, 1s'
guc timeout 500ms
q "SELECT webhooks.enable()" >/dev/null

# new_webhook NAME SITE PORT : a webhook for page.updated of one site
new_webhook() {
	q "SELECT webhooks.create_webhook('$1', '$(url "$3")', '{page.updated}', sites => '{$2}')"
}
# fire SITE : one event for that site's webhook; prints the event id
fire() {
	q "SELECT webhooks.emit('page.updated', jsonb_build_object('id', $1, 'title', 'retry test'), site_id => $1)"
}

WA=$(new_webhook fail-first 1 18910)
WB=$(new_webhook slow 2 18911)
WC=$(new_webhook refused 3 18912)
WD=$(new_webhook retry-after 4 18913)
WE=$(new_webhook gone 5 18914)
WF=$(new_webhook deleted 6 18915)

start_receiver a 18910 --fail-first 2
start_receiver b 18911 --delay 2000
# nothing listens on 18912 yet
start_receiver d 18913 --fail-first 1 --fail-status 503 --retry-after 3
start_receiver e 18914 --status 410
start_receiver f 18915 --status 500

EA=$(fire 1); EB=$(fire 2); EC=$(fire 3); ED=$(fire 4); EE=$(fire 5); EF=$(fire 6)
DA=$(delivery_of "$EA"); DB_=$(delivery_of "$EB"); DC=$(delivery_of "$EC")
DD=$(delivery_of "$ED"); DE=$(delivery_of "$EE"); DF=$(delivery_of "$EF")

# React as soon as each first attempt is recorded: the slow receiver is
# replaced by a fast one, a receiver appears on the refused port, the
# webhook of F is deleted while its retry is pending.
b_done='' c_done='' f_done=''
deadline=$(( $(date +%s) + 10 ))
while [ -z "$b_done" ] || [ -z "$c_done" ] || [ -z "$f_done" ]; do
	if [ -z "$b_done" ] && sql_true "SELECT EXISTS (SELECT 1 FROM webhooks.attempts WHERE delivery_id = $DB_ AND error IS NOT NULL)"; then
		stop_receiver b
		start_receiver b2 18911
		b_done=1
	fi
	if [ -z "$c_done" ] && sql_true "SELECT EXISTS (SELECT 1 FROM webhooks.attempts WHERE delivery_id = $DC)"; then
		start_receiver c 18912
		c_done=1
	fi
	if [ -z "$f_done" ] && sql_true "SELECT EXISTS (SELECT 1 FROM webhooks.attempts WHERE delivery_id = $DF)"; then
		F_STATE=$(q "SELECT status FROM webhooks.deliveries WHERE id = $DF")
		q "SELECT webhooks.delete_webhook($WF)" >/dev/null
		f_done=1
	fi
	[ "$(date +%s)" -ge "$deadline" ] && break
	sleep 0.05
done

# --- A: 500, 500, 200
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = $DA"
is "$(q "SELECT status || ' ' || attempts FROM webhooks.deliveries WHERE id = $DA")" "succeeded 3" \
	"--fail-first 2: the delivery succeeds at attempt 3"
is "$(attempt_summary "$DA")" "500,500,200" "--fail-first 2: attempts show 500, 500, 200"
ok "--fail-first 2: retries follow the 1 s schedule (±10%)" \
	sql_true "SELECT bool_and(gap BETWEEN 0.85 AND 2.5) FROM (
	            SELECT extract(epoch FROM started_at - lag(started_at) OVER (ORDER BY attempt)) AS gap
	            FROM webhooks.attempts WHERE delivery_id = $DA) g WHERE gap IS NOT NULL"
is "$(rx_count a)" 3 "--fail-first 2: the receiver saw 3 requests"

# --- B: timeout, then success
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = $DB_"
is "$(q "SELECT error ~* 'timed out|timeout' FROM webhooks.attempts WHERE delivery_id = $DB_ ORDER BY attempt LIMIT 1")" t \
	"a receiver slower than webhooks.timeout: the first attempt records a timeout"
diag "timeout error: $(q "SELECT error FROM webhooks.attempts WHERE delivery_id = $DB_ ORDER BY attempt LIMIT 1")"
ok "the timed-out attempt took about webhooks.timeout (500 ms)" \
	sql_true "SELECT duration_ms BETWEEN 400 AND 1500 FROM webhooks.attempts WHERE delivery_id = $DB_ ORDER BY attempt LIMIT 1"
is "$(q "SELECT status FROM webhooks.deliveries WHERE id = $DB_")" succeeded \
	"after the timeout, the retry to the now-fast receiver succeeds"

# --- C: refused, then success
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = $DC"
is "$(q "SELECT error ~* 'connect|refused' FROM webhooks.attempts WHERE delivery_id = $DC ORDER BY attempt LIMIT 1")" t \
	"nothing listening: the attempt's error says the connection failed"
diag "refused error: $(q "SELECT error FROM webhooks.attempts WHERE delivery_id = $DC ORDER BY attempt LIMIT 1")"
is "$(q "SELECT status || ' ' || (SELECT http_status FROM webhooks.attempts WHERE delivery_id = $DC ORDER BY attempt DESC LIMIT 1)
         FROM webhooks.deliveries WHERE id = $DC")" "succeeded 200" \
	"once a receiver listens, the retry succeeds"

# --- D: Retry-After 3 beats the 1 s schedule
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = $DD"
is "$(attempt_summary "$DD")" "503,200" "503 with Retry-After, then 200"
GAP=$(q "SELECT round(extract(epoch FROM max(started_at) - min(started_at))::numeric, 2)
         FROM webhooks.attempts WHERE delivery_id = $DD")
diag "Retry-After: 3 -> second attempt ${GAP}s after the first (schedule says 1s)"
ok "Retry-After: 3 -> the second attempt starts >= 3 s after the first" \
	sql_true "SELECT extract(epoch FROM max(started_at) - min(started_at)) BETWEEN 3 AND 6
	          FROM webhooks.attempts WHERE delivery_id = $DD"

# --- E: 410 Gone disables the webhook
wait_sql 10 "SELECT NOT enabled FROM webhooks.webhooks WHERE id = $WE"
is "$(q "SELECT enabled FROM webhooks.webhooks WHERE id = $WE")" f "410 Gone: the webhook is disabled"
ok "410 Gone: disabled_reason mentions 410" \
	sql_true "SELECT disabled_reason ~ '410' AND disabled_at IS NOT NULL FROM webhooks.webhooks WHERE id = $WE"
diag "disabled_reason: $(q "SELECT disabled_reason FROM webhooks.webhooks WHERE id = $WE")"
is "$(q "SELECT status || ' ' || attempts || ' ' || last_status FROM webhooks.deliveries WHERE id = $DE")" "failed 1 410" \
	"410 Gone: the delivery failed after one attempt, no retries"
is "$(rx_count e)" 1 "410 Gone: the receiver saw one request"

# --- F: deleted webhook with a retry pending
is "${F_STATE:-}" pending "the delivery was pending a retry when its webhook was deleted"
wait_sql 10 "SELECT status <> 'pending' FROM webhooks.deliveries WHERE id = $DF"
is "$(q "SELECT status FROM webhooks.deliveries WHERE id = $DF")" cancelled \
	"deleting a webhook with a pending retry: the delivery becomes cancelled"
ok "the cancelled delivery says why and keeps its first attempt" \
	sql_true "SELECT last_error ~ 'deleted' AND attempts = 1 AND finished_at IS NOT NULL
	          AND (SELECT count(*) FROM webhooks.attempts WHERE delivery_id = $DF) = 1
	          FROM webhooks.deliveries WHERE id = $DF"
is "$(rx_count f)" 1 "nothing was sent after the webhook was deleted"

# ---------------------------------------------------------------------
# Retries run out; redeliver() sends the same webhook-id again.
guc retry_schedule '500ms, 500ms'
WG=$(new_webhook exhausted 7 18916)
start_receiver g 18916 --status 500
EG=$(fire 7)
DG=$(delivery_of "$EG")
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = $DG"
is "$(q "SELECT status || ' ' || attempts FROM webhooks.deliveries WHERE id = $DG")" "failed 3" \
	"always 500 with schedule '500ms, 500ms': failed after 3 attempts"
is "$(attempt_summary "$DG")" "500,500,500" "the three attempts are recorded"
ok "the delivery's error mentions no retries left" \
	sql_true "SELECT last_error ~* 'no retries left' FROM webhooks.deliveries WHERE id = $DG"
diag "last_error: $(q "SELECT last_error FROM webhooks.deliveries WHERE id = $DG")"
is "$(q "SELECT last_status FROM webhooks.active WHERE id = $WG")" failing "webhooks.active says failing"
is "$(q "SELECT failed || '/' || succeeded FROM webhooks.webhook_stats WHERE webhook_id = $WG")" "1/0" \
	"webhook_stats counts the failed delivery"
stop_receiver g
start_receiver g2 18916
RD=$(q "SELECT webhooks.redeliver($DG)")
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = ${RD:-0}"
is "$(q "SELECT status || ' ' || redelivery_of FROM webhooks.deliveries WHERE id = ${RD:-0}")" "succeeded $DG" \
	"redeliver() of the failed delivery succeeds once the receiver is fixed"
rx_load g
rx_load g2
is "$(q "SELECT string_agg(DISTINCT j->>'webhook_id', ',') FROM e2e.rx WHERE src IN ('g', 'g2')")" "$EG" \
	"the redelivery carries the same webhook-id as the failed attempts"
is "$(q "SELECT count(*) FROM e2e.rx WHERE src = 'g2'")" 1 "the fixed receiver got the redelivery once"
is "$(q "SELECT last_status FROM webhooks.active WHERE id = $WG")" ok "webhooks.active says ok again"

# ---------------------------------------------------------------------
# webhooks.disable_after: a webhook whose deliveries all fail is disabled.
guc disable_after 3s
guc disable_min_attempts 2
guc retry_schedule '1s, 1s, 1s, 1s, 1s'
WH=$(new_webhook always-failing 8 18917)
start_receiver h 18917 --status 500
EH=$(fire 8)
DH=$(delivery_of "$EH")
wait_sql 15 "SELECT NOT enabled FROM webhooks.webhooks WHERE id = $WH"
is "$(q "SELECT enabled FROM webhooks.webhooks WHERE id = $WH")" f \
	"disable_after 3s, min 2 attempts: the failing webhook is disabled"
ok "its disabled_reason says every delivery failed" \
	sql_true "SELECT disabled_reason ~ 'failed' AND disabled_at IS NOT NULL FROM webhooks.webhooks WHERE id = $WH"
diag "disabled_reason: $(q "SELECT disabled_reason FROM webhooks.webhooks WHERE id = $WH")"
ok "it was disabled no sooner than 3 s after the first failure" \
	sql_true "SELECT w.disabled_at >= (SELECT min(started_at) FROM webhooks.attempts WHERE delivery_id = $DH) + interval '3 s'
	          FROM webhooks.webhooks w WHERE w.id = $WH"
wait_sql 5 "SELECT status <> 'pending' FROM webhooks.deliveries WHERE id = $DH"
is "$(q "SELECT status FROM webhooks.deliveries WHERE id = $DH")" cancelled \
	"the disabled webhook's pending delivery is cancelled"
is "$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM webhooks.webhooks WHERE NOT enabled")" "$WE,$WH" \
	"no other webhook was disabled"

# ---------------------------------------------------------------------
# Claims resume where the previous one stopped in the due index (a mark);
# a delivery that falls due behind the mark is still sent: the mark is
# dropped 2 s after it was set.  Retries to a port nobody listens on keep
# claims (and so a mark) coming while a redelivery is backdated an hour.
guc retry_schedule '1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s'
WN=$(new_webhook busy 10 18919)
WM=$(new_webhook mark 9 18918)
start_receiver m 18918
for i in 1 2 3 4 5; do fire 10 >/dev/null; done
DM=$(delivery_of "$(fire 9)")
wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${DM:-0}"
wait_sql 10 "SELECT count(*) >= 10 FROM webhooks.attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
             WHERE d.webhook_id = $WN"
RM=$(psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
BEGIN;
SELECT webhooks.redeliver($DM) AS id \gset
UPDATE webhooks.deliveries SET next_attempt_at = now() - interval '1 hour' WHERE id = :id;
COMMIT;
SELECT :id;
SQL
)
ok "a delivery due behind the claim mark (backdated an hour) is sent while retries keep the worker claiming" \
	wait_sql 8 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${RM:-0}"

check_no_crash
finish
