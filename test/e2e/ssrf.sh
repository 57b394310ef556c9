#!/usr/bin/env bash
# test/e2e/ssrf.sh - the address guard: webhooks may not reach link-local,
# private or loopback addresses unless webhooks.allowed_networks lists them.
#
# Nothing here may ever leave the machine, even if the guard were broken.
# The worker is the process that connects, and it lives in its cluster's
# network namespace, so this test does not use the cluster of the
# environment: it re-runs itself under `unshare --net --fork` (a fresh
# network namespace with nothing but lo), starts a throw-away cluster of
# its own in there (scripts/cluster.sh, own directory and port), puts
# 10.0.0.1 and 169.254.169.254 on lo, and runs a listener on [::]:8080
# that counts every TCP connection by the address it was made to.  With
# allowed_networks empty every target must be refused with the count
# staying 0; a positive control (allowed_networks = '10.0.0.0/8') shows
# the same listener does see a connection when one is allowed.
set -u

if [ -z "${E2E_SSRF_INNER:-}" ]; then
	if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 ||
		! unshare --net --fork true >/dev/null 2>&1; then
		echo "1..0 # SKIP unshare not available"
		exit 0
	fi
	exec unshare --net --fork env E2E_SSRF_INNER=1 bash "$0" "$@"
fi

# ------------------------------------------------- inside the namespace
source "$(dirname "$0")/lib.sh"
LPORT=8080
plan 25

ip link set lo up &&
	ip addr add 10.0.0.1/8 dev lo &&
	ip addr add 169.254.169.254/16 dev lo || {
	echo "Bail out! could not set up lo in the network namespace"
	exit 1
}
ok "the test's network namespace has no interface but lo" \
	bash -c '[ "$(ip -o link show | grep -cv ": lo:")" -eq 0 ]'

# A throw-away cluster inside the namespace (the one from the environment
# lives outside it).
# shellcheck source=../../scripts/cluster.sh
source "$E2E_TOP/scripts/cluster.sh"
export PGPORT=55490
unset PGHOST
if ! cluster_start "shared_preload_libraries = 'webhooks'" "webhooks.retry_schedule = '100ms, 100ms'" \
	"webhooks.connect_timeout = '2s'" "webhooks.timeout = '3s'"; then
	echo "Bail out! could not start a cluster inside the namespace"
	exit 1
fi
SSRF_CLUSTER_DIR=$CLUSTER_DIR
stop_inner_cluster() {
	if [ -n "${E2E_KEEP:-}" ]; then
		echo "# E2E_KEEP: inner cluster left in $SSRF_CLUSTER_DIR (port $PGPORT) — it dies with nothing; stop it yourself" >&2
		return
	fi
	CLUSTER_DIR=$SSRF_CLUSTER_DIR cluster_stop
}
trap 'e2e_cleanup; stop_inner_cluster' EXIT
WEBHOOKS_CLUSTER_DIR=$SSRF_CLUSTER_DIR
E2E_LOG=$SSRF_CLUSTER_DIR/server.log
E2E_LOG_START=0

# The listener: accepts on every address of the namespace, IPv4 and IPv6,
# and counts connections by local address in a JSON file.
cat >"$E2E_TMP/listener.py" <<'EOF'
import json, os, socket, sys, threading
port, out = int(sys.argv[1]), sys.argv[2]
counts, lock = {}, threading.Lock()
def save():
    with open(out + ".tmp", "w") as f:
        json.dump(counts, f)
    os.replace(out + ".tmp", out)
def handle(c):
    local = c.getsockname()[0]
    if local.startswith("::ffff:"):
        local = local[7:]
    with lock:
        counts[local] = counts.get(local, 0) + 1
        save()
    try:
        c.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                return
            data += d
        head = data.split(b"\r\n\r\n", 1)[0]
        path = head.split(b" ")[1] if head.count(b" ") >= 2 else b"/"
        if path.startswith(b"/redirect"):
            resp = (b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254:%d/latest/meta-data\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n" % port)
        else:
            resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                    b"Connection: close\r\n\r\n{\"ok\":true}")
        c.sendall(resp)
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
s.listen(128)
save()
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
EOF
python3 "$E2E_TMP/listener.py" $LPORT "$E2E_TMP/counts.json" 2>"$E2E_TMP/listener.err" &
E2E_PIDS+=($!)
wait_for 5 test -s "$E2E_TMP/counts.json" || { echo "Bail out! the listener did not start"; exit 1; }

# connections ADDRESS|total : what the listener counted
connections() {
	python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
print(sum(c.values()) if sys.argv[2] == "total" else c.get(sys.argv[2], 0))' "$E2E_TMP/counts.json" "$1"
}

# Prove the listener counts, from inside the namespace, before trusting a 0.
curl -s -o /dev/null --max-time 5 -d x "http://10.0.0.1:$LPORT/probe"
curl -s -o /dev/null --max-time 5 -d x "http://169.254.169.254:$LPORT/probe"
curl -s -o /dev/null --max-time 5 -d x "http://[::1]:$LPORT/probe"
is "$(connections 10.0.0.1)/$(connections 169.254.169.254)/$(connections ::1)" "1/1/1" \
	"the listener sees connections to 10.0.0.1, 169.254.169.254 and ::1 (curl from the test)"
BASE=$(connections total)

setup_db ssrf || { echo "Bail out! no worker in the namespace cluster"; exit 1; }
q "SELECT webhooks.enable()" >/dev/null
PID0=$(worker_pid)
is "$(q "SELECT current_setting('webhooks.allowed_networks')")" "" "webhooks.allowed_networks is empty"

# site -> URL; every one resolves to an address of the namespace
declare -A TARGET=(
	[1]="http://169.254.169.254:$LPORT/latest/meta-data/iam/security-credentials/"
	[2]="http://10.0.0.1:$LPORT/hook"
	[3]="http://[::1]:$LPORT/hook"
	[4]="http://localhost:$LPORT/hook"
	[5]="http://127.0.0.1:$LPORT/hook"
	[6]="http://[::ffff:127.0.0.1]:$LPORT/hook"
	[7]="http://2130706433:$LPORT/hook"
	[8]="http://0.0.0.0:$LPORT/hook"
	[9]="http://[::]:$LPORT/hook"
)
declare -A WHAT=(
	[1]="link-local" [2]="private" [3]="loopback" [4]="loopback" [5]="loopback"
	[6]="loopback" [7]="loopback" [8]="this network" [9]="unspecified"
)
declare -A WID=() EID=() DID=()
for site in "${!TARGET[@]}"; do
	WID[$site]=$(q "SELECT webhooks.create_webhook('ssrf $site', '${TARGET[$site]}', '{page.updated}', sites => '{$site}')")
done
fire() {
	q "SELECT webhooks.emit('page.updated', jsonb_build_object('id', $1), site_id => $1)"
}
for site in "${!TARGET[@]}"; do
	EID[$site]=$(fire "$site")
done
for site in "${!TARGET[@]}"; do
	DID[$site]=$(delivery_of "${EID[$site]}")
done
wait_sql 20 "SELECT count(*) = ${#TARGET[@]} FROM webhooks.deliveries WHERE status = 'failed'"

for site in 1 2 3 4; do
	d=${DID[$site]:-0}
	ok "${TARGET[$site]} is refused: every attempt says '${WHAT[$site]}' and the delivery failed after 3" \
		sql_true "SELECT d.status = 'failed' AND d.attempts = 3
		             AND (SELECT count(*) = 3 AND bool_and(a.error ~ '^refused to connect to .*${WHAT[$site]}')
		                         AND bool_and(a.http_status IS NULL)
		                  FROM webhooks.attempts a WHERE a.delivery_id = d.id)
		          FROM webhooks.deliveries d WHERE d.id = $d"
done
diag "169.254.169.254: $(q "SELECT error FROM webhooks.attempts WHERE delivery_id = ${DID[1]:-0} LIMIT 1")"
diag "localhost: $(q "SELECT error FROM webhooks.attempts WHERE delivery_id = ${DID[4]:-0} LIMIT 1")"
for site in 5 6 7 8 9; do
	d=${DID[$site]:-0}
	ok "${TARGET[$site]} is refused (${WHAT[$site]})" \
		sql_true "SELECT d.status = 'failed'
		             AND (SELECT bool_and(a.error ~ '^refused to connect to') FROM webhooks.attempts a WHERE a.delivery_id = d.id)
		          FROM webhooks.deliveries d WHERE d.id = $d"
done
is "$(connections total)" "$BASE" "the listener got no connection from the worker"
is "$(q "SELECT count(*) FROM webhooks.attempts WHERE error !~ '^refused to connect'")" 0 \
	"no attempt got past the guard"
is "$(worker_pid)" "$PID0" "the worker is still the same process"

# ------------------------------------------------------ positive control
guc allowed_networks '10.0.0.0/8'
E=$(fire 2)
D=$(delivery_of "$E")
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = ${D:-0}"
is "$(q "SELECT status || ' ' || last_status FROM webhooks.deliveries WHERE id = ${D:-0}")" "succeeded 200" \
	"allowed_networks = '10.0.0.0/8': the delivery to 10.0.0.1 succeeds"
is "$(connections 10.0.0.1)" 2 "... and the listener saw it (the test can see traffic)"
E=$(fire 1)
D=$(delivery_of "$E")
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = ${D:-0}"
ok "allowed_networks = '10.0.0.0/8': 169.254.169.254 is still refused" \
	sql_true "SELECT status = 'failed' AND last_error ~ '^refused to connect to 169\.254\.169\.254.*link-local'
	          FROM webhooks.deliveries WHERE id = ${D:-0}"
is "$(connections 169.254.169.254)" 1 "... and never reached the listener"

# An allowed receiver that redirects to the metadata address: not followed.
WR=$(q "SELECT webhooks.create_webhook('redirect', 'http://10.0.0.1:$LPORT/redirect', '{page.updated}', sites => '{20}')")
E=$(fire 20)
D=$(delivery_of "$E")
wait_sql 10 "SELECT status = 'failed' FROM webhooks.deliveries WHERE id = ${D:-0}"
is "$(attempt_summary "${D:-0}")" "302,302,302" "a 302 answer is recorded as a failure"
is "$(connections 169.254.169.254)" 1 "the redirect to 169.254.169.254 is not followed"

guc allowed_networks '127.0.0.1/32'
E=$(fire 4)
D=$(delivery_of "$E")
wait_sql 10 "SELECT status IN ('succeeded', 'failed') FROM webhooks.deliveries WHERE id = ${D:-0}"
ok "allowed_networks = '127.0.0.1/32': localhost is delivered (to 127.0.0.1, or ::1 refused then 127.0.0.1)" \
	sql_true "SELECT status = 'succeeded' FROM webhooks.deliveries WHERE id = ${D:-0}"
# localhost resolves to ::1 and 127.0.0.1; only 127.0.0.1 is allowed and
# nothing listens there: the error must tell the real story (could not
# connect to 127.0.0.1), not only that ::1 was refused by the guard.
WN=$(q "SELECT webhooks.create_webhook('nobody home', 'http://localhost:8081/hook', '{page.updated}', sites => '{30}')")
E=$(fire 30)
D=$(delivery_of "$E")
wait_sql 10 "SELECT status = 'failed' FROM webhooks.deliveries WHERE id = ${D:-0}"
ERR=$(q "SELECT error FROM webhooks.attempts WHERE delivery_id = ${D:-0} ORDER BY attempt LIMIT 1")
diag "localhost:8081 with only 127.0.0.1/32 allowed: $ERR"
ok "localhost with ::1 refused and 127.0.0.1 not listening: the error reports the failed connection" \
	bash -c '[[ "$1" =~ [Ff]ailed\ to\ connect|[Cc]ouldn.t\ connect|[Cc]onnection\ refused ]]' _ "$ERR"
is "$(worker_pid)" "$PID0" "the worker survived all of it"

check_no_crash
finish
