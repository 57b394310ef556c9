#!/usr/bin/env bash
# test/e2e/robustness.sh - receivers that misbehave must not hurt the
# worker: a 10 MB answer, an answer that is not HTTP, a connection reset,
# an empty reply, binary bytes, oversized headers, a webhook deleted
# while its request is in flight, a secret that cannot be decoded.  The
# worker's pid must not change.
# A small python3 server on port 18960 plays the bad receiver, choosing
# its misbehaviour by the request path.
source "$(dirname "$0")/lib.sh"
e2e_require_cluster

PORT=18960
plan 31

setup_db robustness
guc allowed_networks '127.0.0.1/32'
guc retry_schedule '200ms'
q "SELECT webhooks.enable()" >/dev/null

cat >"$E2E_TMP/bad_receiver.py" <<'EOF'
import os, socket, socketserver, struct, sys, threading, time
port, log, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()

def ok_response(body, extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + extra +
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        c.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                return
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            d = c.recv(65536)
            if not d:
                break
            body += d
        path = head.split(b" ")[1].decode()
        with lock, open(log, "a") as f:
            f.write(path + "\n")
        try:
            if path == "/huge":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (10 * 1024 * 1024))
                chunk = b"x" * 65536
                for _ in range(160):
                    c.sendall(chunk)
            elif path == "/garbage":
                c.sendall(b"THIS IS NOT HTTP \x00\xff\xfe at all\r\n\r\nmore garbage\r\n")
            elif path == "/reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif path == "/empty":
                pass
            elif path == "/binary":
                c.sendall(ok_response(b"ok \x00 nul \xff\xfe bad utf-8 \xc3\x28 end"))
            elif path == "/bigheader":
                c.sendall(ok_response(b"{}", b"X-Huge: " + b"h" * (300 * 1024) + b"\r\n"))
            elif path == "/slow":
                time.sleep(3)
                c.sendall(ok_response(b"{\"ok\":true}"))
            else:
                c.sendall(ok_response(b"{\"ok\":true}"))
        except OSError:
            pass

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

srv = Server(("127.0.0.1", port), Handler)
with open(ready, "w") as f:
    f.write("ready\n")
srv.serve_forever()
EOF
python3 "$E2E_TMP/bad_receiver.py" $PORT "$E2E_TMP/bad.log" "$E2E_TMP/bad.ready" 2>"$E2E_TMP/bad.err" &
E2E_PIDS+=($!)
wait_for 5 test -s "$E2E_TMP/bad.ready" || { echo "Bail out! the python receiver did not start"; diag <"$E2E_TMP/bad.err"; exit 1; }
touch "$E2E_TMP/bad.log"

PID0=$(worker_pid)
declare -A WID=() DID=()
SITE=0
for path in huge garbage reset empty binary bigheader; do
	SITE=$((SITE + 1))
	WID[$path]=$(q "SELECT webhooks.create_webhook('$path', 'http://127.0.0.1:$PORT/$path', '{page.updated}', sites => '{$SITE}')")
	EV=$(q "SELECT webhooks.emit('page.updated', jsonb_build_object('id', $SITE), site_id => $SITE)")
	DID[$path]=$(delivery_of "$EV")
done
wait_sql 20 "SELECT bool_and(status IN ('succeeded', 'failed')) FROM webhooks.deliveries"

# --- 10 MB answer
D=${DID[huge]:-0}
is "$(q "SELECT status || ' ' || last_status FROM webhooks.deliveries WHERE id = $D")" "succeeded 200" \
	"a 10 MB answer with status 200 counts as a success"
is "$(q "SELECT length(response_body) <= 4096 AND response_body ~ '^x+\$' FROM webhooks.attempts WHERE delivery_id = $D")" t \
	"only the first 4 KB of the 10 MB answer are kept"
diag "kept $(q "SELECT length(response_body) FROM webhooks.attempts WHERE delivery_id = $D") bytes of the 10 MB answer"

# --- not HTTP
D=${DID[garbage]:-0}
is "$(q "SELECT status || ' ' || attempts FROM webhooks.deliveries WHERE id = $D")" "failed 2" \
	"an answer that is not HTTP: a failed attempt, retried, then failed"
ok "... with an error recorded" \
	sql_true "SELECT bool_and(error IS NOT NULL AND error <> '' AND http_status IS NULL) FROM webhooks.attempts WHERE delivery_id = $D"
diag "garbage: $(q "SELECT error FROM webhooks.attempts WHERE delivery_id = $D LIMIT 1")"

# --- connection reset
D=${DID[reset]:-0}
is "$(q "SELECT status || ' ' || attempts FROM webhooks.deliveries WHERE id = $D")" "failed 2" \
	"a connection reset: failed attempts, retried, then failed"
ok "... the error says so" \
	sql_true "SELECT bool_and(error ~* 'reset|recv|receiv|empty') FROM webhooks.attempts WHERE delivery_id = $D"
diag "reset: $(q "SELECT error FROM webhooks.attempts WHERE delivery_id = $D LIMIT 1")"

# --- closed without an answer
D=${DID[empty]:-0}
is "$(q "SELECT status || ' ' || attempts FROM webhooks.deliveries WHERE id = $D")" "failed 2" \
	"a connection closed without an answer: failed"
ok "... with an error recorded" \
	sql_true "SELECT bool_and(error IS NOT NULL) FROM webhooks.attempts WHERE delivery_id = $D"
diag "empty: $(q "SELECT error FROM webhooks.attempts WHERE delivery_id = $D LIMIT 1")"

# --- NUL and invalid UTF-8 in the answer
D=${DID[binary]:-0}
is "$(q "SELECT status FROM webhooks.deliveries WHERE id = $D")" succeeded \
	"an answer with NUL bytes and invalid UTF-8 is a success"
ok "... and its body is stored as clean text" \
	sql_true "SELECT response_body ~ '^ok .* end\$' FROM webhooks.attempts WHERE delivery_id = $D"
diag "binary body stored as: $(q "SELECT response_body FROM webhooks.attempts WHERE delivery_id = $D")"

# --- 300 KB response header
D=${DID[bigheader]:-0}
ok "a 300 KB response header ends the delivery one way or the other" \
	sql_true "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = $D"
diag "big header: $(q "SELECT coalesce(error, http_status::text) FROM webhooks.attempts WHERE delivery_id = $D LIMIT 1")"

is "$(worker_pid)" "$PID0" "the worker is the same process after all of that"
ok "the bad receiver saw every kind of request" \
	bash -c "for p in huge garbage reset empty binary bigheader; do grep -qx /\$p '$E2E_TMP/bad.log' || exit 1; done"

# --- the webhook is deleted while its request is in flight
WS=$(q "SELECT webhooks.create_webhook('slow', 'http://127.0.0.1:$PORT/slow', '{page.updated}', sites => '{50}')")
EV=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 50}', site_id => 50)")
DS=$(inflight_delivery_of "$EV")
wait_for 5 grep -qx /slow "$E2E_TMP/bad.log"
ok "a slow request is in flight (a first attempt: no delivery row until its outcome)" \
	sql_true "SELECT NOT EXISTS (SELECT 1 FROM webhooks.deliveries WHERE id = ${DS:-0})
	          AND EXISTS (SELECT 1 FROM webhooks.inflight_first_attempts WHERE ${DS:-0} = ANY (delivery_ids))"
q "SELECT webhooks.delete_webhook($WS)" >/dev/null
ok "the webhook is deleted while its request is in flight" \
	sql_true "SELECT NOT EXISTS (SELECT 1 FROM webhooks.webhooks WHERE id = $WS)"
wait_sql 10 "SELECT status <> 'pending' FROM webhooks.deliveries WHERE id = ${DS:-0}"
ok "its delivery ends succeeded or cancelled (not stuck, not lost)" \
	sql_true "SELECT status IN ('succeeded', 'cancelled') FROM webhooks.deliveries WHERE id = ${DS:-0}"
diag "delivery of the deleted webhook: $(q "SELECT status || ' / ' || coalesce(last_error, last_status::text) FROM webhooks.deliveries WHERE id = ${DS:-0}")"
is "$(q "SELECT count(*) FROM webhooks.delivery_log WHERE id = ${DS:-0} AND webhook IS NULL")" 1 \
	"delivery_log still shows it, without the webhook's name"

# --- HTTPS: the host name is verified too (test/e2e/https.sh covers the
# CA checks): a certificate the CA file trusts, but for another name.
if command -v openssl >/dev/null 2>&1; then
	mkdir -p "$E2E_TMP/tls" && chmod 755 "$E2E_TMP/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
		-keyout "$E2E_TMP/tls/wrong.key" -out "$E2E_TMP/tls/wrong.pem" \
		-subj "/CN=wrong.example" -addext "subjectAltName=DNS:wrong.example" >/dev/null 2>&1
	chmod 644 "$E2E_TMP/tls/wrong.pem"
	cat >"$E2E_TMP/tls_receiver.py" <<'PY'
import http.server, ssl, sys
port, cert, key, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(ready, "w").write("ready\n")
srv.serve_forever()
PY
	python3 "$E2E_TMP/tls_receiver.py" 18961 "$E2E_TMP/tls/wrong.pem" "$E2E_TMP/tls/wrong.key" \
		"$E2E_TMP/tls.ready" 2>>"$E2E_TMP/tls.err" &
	E2E_PIDS+=($!)
	wait_for 5 test -s "$E2E_TMP/tls.ready"
	guc ca_file "$E2E_TMP/tls/wrong.pem"
	WT=$(q "SELECT webhooks.create_webhook('tls', 'https://127.0.0.1:18961/hook', '{page.updated}', sites => '{70}')")
	EV=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 70}', site_id => 70)")
	DT=$(delivery_of "$EV")
	wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = ${DT:-0}"
	R=$(q "SELECT status || '|' || coalesce(last_error, '') FROM webhooks.deliveries WHERE id = ${DT:-0}")
	diag "certificate for wrong.example at 127.0.0.1: $R"
	ok "a certificate the CA file trusts, but for another host name, is refused" \
		bash -c '[[ "$1" == failed\|* && "$1" =~ [Cc]ertificate|subject|name ]]' _ "$R"
	guc_reset ca_file
else
	skip "openssl not available"
fi

# --- a secret that cannot be decoded at send time (validation bypassed by a
# superuser): each attempt fails with the reason and nothing is sent, on the
# retry schedule like any failure; rotate_secret() mends it at once (the
# corrupted secret, now the previous one, is left out of the signature)
WBAD=$(q "SELECT webhooks.create_webhook('bad secret', 'http://127.0.0.1:$PORT/ok', '{page.updated}', sites => '{80}')")
q "ALTER TABLE webhooks.webhooks DISABLE TRIGGER webhooks_validate;
   UPDATE webhooks.webhooks SET secret = 'whsec_%%%not-base64%%%' WHERE id = $WBAD;
   ALTER TABLE webhooks.webhooks ENABLE TRIGGER webhooks_validate" >/dev/null
EV=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 80}', site_id => 80)")
DBAD=$(delivery_of "$EV")
wait_sql 10 "SELECT count(*) > 0 FROM webhooks.attempts WHERE delivery_id = ${DBAD:-0}"
R=$(q "SELECT a.error || '|' || (a.http_status IS NULL) FROM webhooks.attempts a
       WHERE a.delivery_id = ${DBAD:-0} ORDER BY a.attempt LIMIT 1")
diag "undecodable secret: $R"
is "$R" "could not send: secret is not valid base64|true" \
	"an undecodable secret fails the attempt with the reason, and nothing is sent"
wait_sql 15 "SELECT status = 'failed' FROM webhooks.deliveries WHERE id = ${DBAD:-0}"
is "$(q "SELECT status || '|' || attempts || '|' || last_error FROM webhooks.deliveries WHERE id = ${DBAD:-0}")" \
	"failed|2|could not send: secret is not valid base64 (no retries left after 2 attempts)" \
	"it is retried on the schedule (one retry here), then failed"
q "SELECT webhooks.rotate_secret($WBAD)" >/dev/null
EV=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 81}', site_id => 80)")
DBAD=$(delivery_of "$EV")
ok "after rotate_secret() the next event is delivered, the corrupted previous secret left out" \
	wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${DBAD:-0}"

# --- a malformed row written into the dispatch queue by hand (arrays of
# different lengths): left out with a WARNING, and the events behind it are
# still delivered (failing the dispatch would stop the whole queue)
WQ=$(q "SELECT webhooks.create_webhook('after bad row', 'http://127.0.0.1:$PORT/ok', '{page.updated}', sites => '{90}')")
q "INSERT INTO webhooks.dispatch_queue (first_event, event_ids, types, site_ids, space_ids, webhook_ids, payloads, created_ats)
   VALUES ('00000000-0000-7000-8000-000000000001', '{00000000-0000-7000-8000-000000000001}', '{}', '{}', '{}',
           ARRAY[$WQ]::bigint[], '{}', '{}')" >/dev/null
EV=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 90}', site_id => 90)")
DQ=$(delivery_of "$EV")
ok "an event queued behind a malformed dispatch_queue row is delivered" \
	wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${DQ:-0}"
ok "the malformed row is gone from the queue" \
	sql_true "SELECT NOT EXISTS (SELECT 1 FROM webhooks.dispatch_queue WHERE first_event = '00000000-0000-7000-8000-000000000001')"
log_says_skipped() { new_log | grep -q 'skipped a malformed row of webhooks.dispatch_queue'; }
ok "server.log says the malformed row was skipped, with its first_event" log_says_skipped

# --- a first attempt whose outcome was never recorded (here: a row of
# inflight_first_attempts whose lease ran out, written by hand for an event
# that has no delivery): housekeeping creates the delivery, pending with an
# "interrupted" attempt, and it is sent
EV=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 91}', site_id => 90)")
DQ=$(delivery_of "$EV")
wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${DQ:-0}"
NEXT=$(q "SELECT nextval('webhooks.deliveries_id_seq')")
q "INSERT INTO webhooks.inflight_first_attempts (first_delivery, delivery_ids, event_ids, webhook_ids, leased_until)
   VALUES ($NEXT, ARRAY[$NEXT]::bigint[], ARRAY['$EV']::uuid[], ARRAY[$WQ]::bigint[], now() - interval '1 second')" >/dev/null
ok "an expired in-flight first attempt is recovered by housekeeping and sent" \
	wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = $NEXT"
is "$(attempt_summary "$NEXT")" "error,200" "its attempts: the interrupted one, then the HTTP 200"
ok "its row in inflight_first_attempts is gone" \
	sql_true "SELECT NOT EXISTS (SELECT 1 FROM webhooks.inflight_first_attempts WHERE first_delivery = $NEXT)"

# --- and everything still works
WOK=$(q "SELECT webhooks.create_webhook('fine', 'http://127.0.0.1:$PORT/ok', '{page.updated}', sites => '{60}')")
EV=$(q "SELECT webhooks.emit('page.updated', '{\"id\": 60}', site_id => 60)")
DOK=$(delivery_of "$EV")
wait_sql 10 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${DOK:-0}"
ok "a well-behaved receiver is still served" \
	sql_true "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${DOK:-0}"
is "$(worker_pid)" "$PID0" "the worker pid never changed (no crash, no restart)"
ok "the worker is still in pg_stat_activity" \
	sql_true "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $PID0 AND backend_type = 'pg-webhooks worker')"

check_no_crash
finish
