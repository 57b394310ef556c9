#!/usr/bin/env bash
# test/e2e/dump_restore.sh - pg_dump of a database using pg-webhooks restores
# into a working one: the webhooks (with their secrets), the tracked tables
# and the capture triggers (whose WHEN clause names the table) come back, and
# a change made after the restore is captured, delivered and validly signed.
# Receiver port: 18990.
source "$(dirname "$0")/lib.sh"
e2e_require_cluster

PORT=18990
plan 8

setup_db dump_src
guc allowed_networks '127.0.0.1/32'
q "CREATE SCHEMA cms;
   CREATE TABLE cms.pages (id bigserial PRIMARY KEY, site_id bigint, title text, secret text);
   SELECT webhooks.track('cms.pages', 'page', exclude => '{secret}');
   SELECT webhooks.create_webhook('restored', '$(url $PORT)', '{page.*}');
   SELECT webhooks.enable();" >/dev/null 2>&1
SECRET=$(q "SELECT secret FROM webhooks.webhooks WHERE name = 'restored'")

pg_dump -d e2e_dump_src -f "$E2E_TMP/dump.sql" 2>"$E2E_TMP/dump.err"
ok "pg_dump of the database succeeds" test -s "$E2E_TMP/dump.sql"

# the restored database: created empty, then the dump (the worker of the
# source database keeps running; the restored one gets its own)
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS e2e_dump_dst WITH (FORCE)" >/dev/null 2>&1
createdb e2e_dump_dst
E2E_DATABASES+=(e2e_dump_dst)
psql -X -q -v ON_ERROR_STOP=1 -d e2e_dump_dst -f "$E2E_TMP/dump.sql" >"$E2E_TMP/restore.out" 2>&1
ok "the dump restores without an error" test $? -eq 0
DB=e2e_dump_dst

is "$(q "SELECT name || ' ' || (secret = '$SECRET') FROM webhooks.webhooks")" "restored true" \
	"the webhook comes back with its secret"
is "$(q "SELECT tbl::text || ' ' || resource || ' ' || exclude::text FROM webhooks.tracked_tables")" \
	"cms.pages page {secret}" "the tracked table comes back with its configuration"
is "$(q "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'cms.pages'::regclass AND tgname = 'webhooks_capture'
         AND pg_get_triggerdef(oid) LIKE '%WHEN (webhooks._capture_wanted(''cms.pages''::regclass))%'")" 1 \
	"the capture trigger comes back, its WHEN clause naming the restored table"

start_receiver dst $PORT --secret "$SECRET"
wait_for 10 worker_running e2e_dump_dst
q "INSERT INTO cms.pages (site_id, title, secret) VALUES (1, 'after the restore', 'hidden')" >/dev/null
ok "a change made after the restore is delivered" wait_for 10 rx_at_least dst 1
rx_load dst
is "$(q "SELECT (j->>'signature') || ' ' || ((j->>'body')::jsonb->'data'->>'title') || ' ' || ((j->>'body')::jsonb->'data' ? 'secret')
         FROM e2e.rx WHERE src = 'dst'")" "valid after the restore false" \
	"validly signed with the restored secret, the excluded column still left out"
check_no_crash
finish
