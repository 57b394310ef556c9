#!/usr/bin/env bash
# Connections: many requests share few keep-alive connections, never more
# than webhooks.max_connections at once, and requests really do overlap;
# fanning out over several receivers keeps a connection to each.
source "$(dirname "$0")/lib.sh"

PORT=18975
plan 7
setup_db keepalive || finish
guc allowed_networks '127.0.0.1/32'
guc max_connections 4

# an HTTP/1.1 server that answers after 20 ms and counts connections
cat >"$E2E_TMP/ka.py" <<'PY'
import http.server, socketserver, sys, threading, time
lock = threading.Lock()
stats = {"connections": 0, "requests": 0, "open": 0, "max_open": 0}
def save():
    open(sys.argv[2], "w").write("%(connections)d %(requests)d %(max_open)d" % stats)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        with lock:
            stats["connections"] += 1; stats["open"] += 1
            stats["max_open"] = max(stats["max_open"], stats["open"]); save()
    def finish(self):
        super().finish()
        with lock:
            stats["open"] -= 1
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(0.02)
        with lock:
            stats["requests"] += 1; save()
        # one write: headers and body in separate segments would wait for a delayed ACK
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
echo "0 0 0" >"$E2E_TMP/ka.stats"
python3 "$E2E_TMP/ka.py" "$PORT" "$E2E_TMP/ka.stats" &
E2E_PIDS+=("$!")
wait_for 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null

q "SELECT webhooks.enable()" >/dev/null 2>&1
q "SELECT webhooks.create_webhook('ka', '$(url $PORT)', '{*}')" >/dev/null
START=$(date +%s.%N)
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('n', g), site_id => 1)) FROM generate_series(1, 200) g" >/dev/null
ok "200 deliveries succeed" \
	wait_sql 30 "SELECT count(*) = 200 FROM webhooks.deliveries WHERE status = 'succeeded'"
ELAPSED=$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
read -r CONNECTIONS REQUESTS MAX_OPEN <"$E2E_TMP/ka.stats"
diag "$REQUESTS requests over $CONNECTIONS connections (at most $MAX_OPEN open at once) in ${ELAPSED}s"
ok "connections are kept alive and reused (at most 8 for 200 requests)" test "$CONNECTIONS" -le 8
ok "never more than webhooks.max_connections open at once" test "$MAX_OPEN" -le 4
# 200 requests of 20 ms one after the other would take 4 s; 4 at a time about 1 s
ok "requests overlap (200 x 20 ms took less than 3 s)" awk -v e="$ELAPSED" 'BEGIN { exit !(e < 3) }'

# Fan-out: three receivers, every event goes to all three, in turn.  With
# max_connections 2, idle connections to the other receivers stay open (up
# to 2 x max_connections, at least max_connections + 16) instead of being
# closed to open one to the next receiver.
guc max_connections 2
q "SELECT webhooks.delete_webhook(id) FROM webhooks.webhooks" >/dev/null
FAN_PIDS=()
for i in 1 2 3; do
	echo "0 0 0" >"$E2E_TMP/fan$i.stats"
	python3 "$E2E_TMP/ka.py" $((PORT + i)) "$E2E_TMP/fan$i.stats" &
	E2E_PIDS+=("$!")
	wait_for 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$((PORT + i))" 2>/dev/null
	q "SELECT webhooks.create_webhook('fan $i', '$(url $((PORT + i)))', '{*}')" >/dev/null
done
q "SELECT count(webhooks.emit('page.updated', jsonb_build_object('n', g), site_id => 1)) FROM generate_series(1, 60) g" >/dev/null
ok "180 deliveries to three receivers succeed" \
	wait_sql 30 "SELECT count(*) = 180 FROM webhooks.deliveries d JOIN webhooks.webhooks w ON w.id = d.webhook_id
	             WHERE w.name LIKE 'fan %' AND d.status = 'succeeded'"
TOTAL=0
MAX_ANY=0
for i in 1 2 3; do
	read -r C R M <"$E2E_TMP/fan$i.stats"
	diag "receiver $i: $R requests over $C connections (at most $M open at once)"
	TOTAL=$((TOTAL + C))
	[ "$M" -gt "$MAX_ANY" ] && MAX_ANY=$M
done
ok "each receiver keeps its connections: at most 12 in all for 180 requests" test "$TOTAL" -le 12
ok "never more than webhooks.max_connections open to one receiver" test "$MAX_ANY" -le 2
guc_reset max_connections
finish
