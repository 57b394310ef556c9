#!/usr/bin/env bash
# test/e2e/rotation.sh - rotate_secret(): during webhooks.secret_overlap a
# delivery carries two signatures (new secret first, previous second), each
# verifiable on its own; with secret_overlap = 0 only the new one.
# Receiver port: 18930.
source "$(dirname "$0")/lib.sh"
e2e_require_cluster

PORT=18930
plan 15

setup_db rotation
guc allowed_networks '127.0.0.1/32'
q "SELECT webhooks.enable()" >/dev/null
OLD=$(q "SELECT webhooks.generate_secret()")
WH=$(q "SELECT webhooks.create_webhook('rotating', '$(url $PORT)', '{page.updated}', secret => '$OLD')")

# deliver TAG : one event, waits for its delivery; prints the event id
deliver() {
	local ev
	ev=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 1, \"title\": \"$1\"}', site_id => 1)")
	wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE event_id = '$ev'" &&
		wait_for 5 grep -q "\"webhook_id\":\"$ev\"" "$E2E_TMP/rx.jsonl"
	echo "$ev"
}
# the receiver's record of an event: FIELD of e2e.rx.j
rx_field() {
	q "SELECT $2 FROM e2e.rx WHERE j->>'webhook_id' = '$1'"
}
SIG="j->'headers'->>'webhook-signature'"
signed_with() { # secret
	echo "webhooks.sign('$1', j->>'webhook_id', (j->>'webhook_timestamp')::bigint, j->>'body')"
}

# ---------------------------------------------------------------- before
start_receiver rx $PORT --secret "$OLD"
E1=$(deliver before)
rx_load rx
ok "before rotation: one v1 signature" [ "$(rx_field "$E1" "$SIG ~ '^v1,[A-Za-z0-9+/]{43}=\$'")" = t ]
is "$(rx_field "$E1" "$SIG = $(signed_with "$OLD")")" t "before rotation: it is webhooks.sign(old secret, ...)"
stop_receiver rx

# ---------------------------------------------------------------- rotate
NEW=$(q "SELECT webhooks.rotate_secret($WH)")
ok "rotate_secret returns a new whsec_ secret" \
	bash -c '[ -n "$1" ] && [ "$1" != "$2" ] && [[ "$1" == whsec_* ]]' _ "$NEW" "$OLD"
is "$(q "SELECT secret = '$NEW' AND previous_secret = '$OLD' AND secret_rotated_at IS NOT NULL
         FROM webhooks.webhooks WHERE id = $WH")" t "the webhook keeps the previous secret"

start_receiver rx $PORT --secret "$NEW" --secret "$OLD"
E2=$(deliver during)
rx_load rx
diag "signature during the overlap: $(rx_field "$E2" "$SIG")"
ok "during the overlap: two space-separated v1 signatures" \
	[ "$(rx_field "$E2" "$SIG ~ '^v1,[A-Za-z0-9+/]{43}= v1,[A-Za-z0-9+/]{43}=\$'")" = t ]
is "$(rx_field "$E2" "j->>'signature'")" valid "the receiver with both secrets says valid"
is "$(rx_field "$E2" "split_part($SIG, ' ', 1) = $(signed_with "$NEW")")" t \
	"the first signature verifies with the new secret"
is "$(rx_field "$E2" "split_part($SIG, ' ', 2) = $(signed_with "$OLD")")" t \
	"the second signature verifies with the previous secret"
stop_receiver rx

# A receiver that still only knows the old secret keeps accepting.
start_receiver rx $PORT --secret "$OLD"
E3=$(deliver old-receiver)
rx_load rx
is "$(rx_field "$E3" "j->>'signature'")" valid "a receiver that only knows the old secret still says valid"
stop_receiver rx

# A receiver that only knows the new secret accepts too.
start_receiver rx $PORT --secret "$NEW"
E4=$(deliver new-receiver)
rx_load rx
is "$(rx_field "$E4" "j->>'signature'")" valid "a receiver that only knows the new secret says valid"
stop_receiver rx

# ----------------------------------------------------------- overlap over
guc secret_overlap 0
start_receiver rx $PORT --secret "$OLD"
E5=$(deliver after)
rx_load rx
diag "signature with secret_overlap = 0: $(rx_field "$E5" "$SIG")"
ok "secret_overlap = 0: only one signature" \
	[ "$(rx_field "$E5" "$SIG ~ '^v1,[A-Za-z0-9+/]{43}=\$'")" = t ]
is "$(rx_field "$E5" "$SIG = $(signed_with "$NEW")")" t "secret_overlap = 0: it is the new secret's"
is "$(rx_field "$E5" "j->>'signature'")" invalid "secret_overlap = 0: a receiver with only the old secret says invalid"
is "$(q "SELECT count(*) FROM e2e.rx")" 5 "five deliveries, each received once"

check_no_crash
finish
