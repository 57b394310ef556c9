#!/usr/bin/env bash
# HTTPS receivers: certificates are verified against the system's CA store,
# or against webhooks.ca_file for a private CA; a failed verification is a
# failed attempt with curl's reason, and the delivery succeeds once the CA
# is configured.
source "$(dirname "$0")/lib.sh"

PORT=18990
if ! command -v openssl >/dev/null || ! command -v python3 >/dev/null; then
	echo "1..0 # SKIP openssl or python3 not available"
	exit 0
fi
plan 6

# a private CA and a certificate for 127.0.0.1 signed by it
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=pg-webhooks test CA" \
	-keyout "$E2E_TMP/ca.key" -out "$E2E_TMP/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
	-keyout "$E2E_TMP/server.key" -out "$E2E_TMP/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$E2E_TMP/san.ext"
openssl x509 -req -in "$E2E_TMP/server.csr" -CA "$E2E_TMP/ca.crt" -CAkey "$E2E_TMP/ca.key" \
	-CAcreateserial -days 1 -extfile "$E2E_TMP/san.ext" -out "$E2E_TMP/server.crt" >/dev/null 2>&1
chmod 644 "$E2E_TMP/ca.crt"

# a tiny HTTPS receiver that answers 200 and counts requests
cat >"$E2E_TMP/https_server.py" <<'PY'
import http.server, ssl, sys
count = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get('Content-Length', 0)))
        count += 1
        open(sys.argv[4], 'w').write(str(count))
        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers()
        self.wfile.write(b'ok')
    def log_message(self, *a): pass
srv = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
echo 0 >"$E2E_TMP/https.count"
python3 "$E2E_TMP/https_server.py" "$PORT" "$E2E_TMP/server.crt" "$E2E_TMP/server.key" "$E2E_TMP/https.count" &
HTTPS_PID=$!
E2E_PIDS+=("$HTTPS_PID")
wait_for 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null

setup_db https || { finish; }
guc allowed_networks '127.0.0.1/32'
guc retry_schedule '1s, 1s, 1s, 1s, 1s'

q "SELECT webhooks.enable()" >/dev/null 2>&1
q "SELECT webhooks.create_webhook('tls', 'https://127.0.0.1:$PORT/hook', '{*}')" >/dev/null
DELIVERY=$(q "SELECT webhooks.send_test(1)")

ok "an untrusted certificate fails the attempt" \
	wait_sql 15 "SELECT EXISTS (SELECT 1 FROM webhooks.attempts WHERE delivery_id = $DELIVERY AND error IS NOT NULL)"
ERR=$(q "SELECT error FROM webhooks.attempts WHERE delivery_id = $DELIVERY ORDER BY id LIMIT 1")
diag "error: $ERR"
ok "the error says why (certificate)" bash -c "grep -qi 'certificate' <<<\"$ERR\""
is "$(cat "$E2E_TMP/https.count")" 0 "nothing was POSTed over the unverified connection"

guc ca_file "$E2E_TMP/ca.crt"
ok "with webhooks.ca_file the delivery succeeds" \
	wait_sql 15 "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = $DELIVERY"
is "$(cat "$E2E_TMP/https.count")" 1 "the receiver got exactly one POST"
ok "the attempts show the failure, then 200" \
	sql_true "SELECT (array_agg(http_status ORDER BY id))[array_length(array_agg(id), 1)] = 200
	          AND bool_or(error IS NOT NULL) FROM webhooks.attempts WHERE delivery_id = $DELIVERY"
guc_reset ca_file
finish
