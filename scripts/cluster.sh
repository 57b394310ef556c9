# Sourced by test/run, demo/run and bench/run: a throw-away PostgreSQL 15
# cluster in a temporary directory, on its own port and socket directory,
# run by an unprivileged OS user (PostgreSQL refuses to run as root).
#
#   cluster_start [extra postgresql.conf lines...]   sets PGHOST, PGPORT, PGUSER
#   cluster_stop                                     stops it and removes the directory
#   cluster_restart [-m immediate]
#   as_cluster_user CMD...                           runs CMD as the cluster's OS user

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
CLUSTER_OS_USER=${CLUSTER_OS_USER:-pgwebhooks}
: "${PGPORT:=55432}"

as_cluster_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$CLUSTER_OS_USER" -- "$@"
    else
        "$@"
    fi
}

cluster_start() {
    if [ "$(id -u)" -eq 0 ] && ! id "$CLUSTER_OS_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$CLUSTER_OS_USER"
    fi
    CLUSTER_DIR=$(mktemp -d /tmp/pgwebhooks.XXXXXX)
    chmod 755 "$CLUSTER_DIR"
    [ "$(id -u)" -eq 0 ] && chown "$CLUSTER_OS_USER" "$CLUSTER_DIR"
    as_cluster_user "$PGBIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust \
        --no-sync -E UTF8 --locale=C.UTF-8 >"$CLUSTER_DIR/initdb.log" 2>&1 || {
        cat "$CLUSTER_DIR/initdb.log" >&2; return 1; }
    {
        echo "listen_addresses = ''"
        echo "port = $PGPORT"
        echo "unix_socket_directories = '$CLUSTER_DIR'"
        echo "fsync = off"
        echo "max_worker_processes = 32"
        for line in "$@"; do echo "$line"; done
    } | as_cluster_user tee -a "$CLUSTER_DIR/data/postgresql.conf" >/dev/null
    export PGHOST="$CLUSTER_DIR" PGPORT PGUSER=postgres
    as_cluster_user "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w -t 60 start >/dev/null
}

cluster_restart() {
    as_cluster_user "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -w -t 60 "$@" stop >/dev/null || true
    as_cluster_user "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w -t 60 start >/dev/null
}

cluster_log() {
    cat "$CLUSTER_DIR/server.log"
}

cluster_stop() {
    [ -n "${CLUSTER_DIR:-}" ] || return 0
    as_cluster_user "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    if [ -n "${KEEP_CLUSTER_LOG:-}" ]; then cp "$CLUSTER_DIR/server.log" "$KEEP_CLUSTER_LOG" 2>/dev/null || true; fi
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=
}
