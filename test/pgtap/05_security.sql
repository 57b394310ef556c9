-- pgTAP: privileges.  PUBLIC gets nothing in schema webhooks; a CMS role
-- with no rights on it still fires events but cannot read or change
-- anything; webhooks_admin manages webhooks.
-- Roles are cluster-wide, but CREATE ROLE is transactional: the final
-- ROLLBACK removes cms_app and hook_admin again.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(63);

CREATE ROLE cms_app NOLOGIN;
CREATE ROLE hook_admin NOLOGIN IN ROLE webhooks_admin;

-- the CMS's table, owned by the superuser, written by cms_app
CREATE SCHEMA sec;
CREATE TABLE sec.articles (id int PRIMARY KEY, site_id int, title text, api_token text);
SELECT webhooks.track('sec.articles', 'page', exclude => '{api_token}');
GRANT USAGE ON SCHEMA sec TO cms_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON sec.articles TO cms_app;
-- a table cms_app owns
CREATE TABLE sec.app_owned (id int PRIMARY KEY, site_id int);
ALTER TABLE sec.app_owned OWNER TO cms_app;

SELECT webhooks.create_webhook('pages', 'https://example.com/pages', '{page.*}') AS hook \gset
SELECT webhooks.enable();

-- ----------------------------------------------------- catalog of grants ---
SELECT has_role('cms_app', 'role cms_app exists inside the transaction');
SELECT is_member_of('webhooks_admin', 'hook_admin', 'hook_admin is a member of webhooks_admin');
SELECT isnt_member_of('webhooks_admin', 'cms_app', 'cms_app is not a member of webhooks_admin');

SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                  aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
           WHERE n.nspname = 'webhooks' AND a.grantee = 0), 0,
          'PUBLIC holds no privilege on any table, view or sequence in schema webhooks');
SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'webhooks' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             AND has_table_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')), 0,
          'has_table_privilege(public, ...) is false for every relation in schema webhooks');
SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'webhooks' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND has_table_privilege('cms_app', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')), 0,
          'a role without grants has no privilege on any relation in schema webhooks');
SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'webhooks'
             AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('cms_app', c.oid, 'USAGE, SELECT, UPDATE') END), 0,
          'nor on any sequence');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,
                  aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
           WHERE n.nspname = 'webhooks' AND a.grantee = 0
             AND p.oid <> 'webhooks._capture_wanted(regclass)'::regprocedure), 0,
          'PUBLIC may execute no function in schema webhooks but the capture trigger''s WHEN function');
SELECT is((SELECT array_agg(p.oid::regprocedure::text) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'webhooks' AND has_function_privilege('cms_app', p.oid, 'EXECUTE')),
          ARRAY['webhooks._capture_wanted(regclass)'],
          'a role without grants may execute only that function in schema webhooks');
SELECT ok(NOT has_schema_privilege('cms_app', 'webhooks', 'USAGE'), 'a role without grants has no USAGE on schema webhooks');
SELECT ok(NOT has_schema_privilege('public', 'webhooks', 'USAGE') AND NOT has_schema_privilege('public', 'webhooks', 'CREATE'),
          'PUBLIC has no USAGE or CREATE on schema webhooks');

SELECT table_privs_are('webhooks', 'webhooks', 'webhooks_admin', ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
                       'webhooks_admin manages webhooks.webhooks');
SELECT table_privs_are('webhooks', 'events', 'webhooks_admin', ARRAY['SELECT'], 'webhooks_admin only reads the queue');
SELECT table_privs_are('webhooks', 'event_types', 'webhooks_admin', ARRAY['SELECT'], 'webhooks_admin only reads the catalog');
SELECT table_privs_are('webhooks', 'settings', 'webhooks_admin', ARRAY['SELECT', 'INSERT', 'UPDATE'], 'webhooks_admin flips the switch');
SELECT ok(has_function_privilege('webhooks_admin', 'webhooks.create_webhook(text, text, text[], bigint[], bigint[], jsonb, text, boolean)', 'EXECUTE'),
          'webhooks_admin may execute create_webhook');
SELECT ok(has_schema_privilege('webhooks_admin', 'webhooks', 'USAGE') AND NOT has_schema_privilege('webhooks_admin', 'webhooks', 'CREATE'),
          'webhooks_admin has USAGE but not CREATE on schema webhooks');

-- ------------------------------------------- cms_app, no rights at all ---
SET LOCAL ROLE cms_app;
SELECT is(current_user::text, 'cms_app', 'now running as cms_app');
SELECT lives_ok($$INSERT INTO sec.articles VALUES (1, 1, 'by the app', 'tok-123-secret')$$, 'cms_app inserts into the tracked table');
SELECT lives_ok($$UPDATE sec.articles SET title = 'edited by the app' WHERE id = 1$$, 'cms_app updates it');
SELECT lives_ok($$INSERT INTO sec.articles VALUES (2, 2, 'second', 'tok-456-secret')$$, 'cms_app inserts another row');
SELECT lives_ok($$DELETE FROM sec.articles WHERE id = 2$$, 'cms_app deletes it');
SELECT throws_ok('SELECT secret FROM webhooks.webhooks', '42501', 'permission denied for schema webhooks',
                 'cms_app cannot read webhook secrets');
SELECT throws_ok('SELECT * FROM webhooks.events', '42501', 'permission denied for schema webhooks',
                 'cms_app cannot read the queue');
SELECT throws_ok('SELECT * FROM webhooks.active', '42501', 'permission denied for schema webhooks',
                 'cms_app cannot read webhooks.active');
SELECT throws_ok($$SELECT webhooks.create_webhook('x', 'https://evil.example/', '{*}')$$, '42501',
                 'permission denied for schema webhooks', 'cms_app cannot create a webhook');
SELECT throws_ok($$INSERT INTO webhooks.webhooks (name, url, events) VALUES ('x', 'https://evil.example/', '{*}')$$, '42501',
                 'permission denied for schema webhooks', 'cms_app cannot insert a webhook');
SELECT throws_ok('SELECT webhooks._capture_wanted(''pg_class'')', '42501', 'permission denied for schema webhooks',
                 'cms_app cannot call the WHEN function by name');
SELECT throws_ok('SELECT webhooks.enable()', '42501', 'permission denied for schema webhooks', 'cms_app cannot call enable()');
SELECT throws_ok('SELECT webhooks.disable()', '42501', 'permission denied for schema webhooks', 'cms_app cannot call disable()');
SELECT throws_ok($$SELECT webhooks.emit('page.published', '{}', 1)$$, '42501', 'permission denied for schema webhooks',
                 'cms_app cannot emit() events');
SELECT throws_ok($$SELECT webhooks.track('sec.app_owned', 'page')$$, '42501', 'permission denied for schema webhooks',
                 'cms_app cannot track() even its own table');
SELECT throws_ok($$CREATE TRIGGER sneaky AFTER INSERT ON sec.app_owned FOR EACH ROW EXECUTE FUNCTION webhooks._capture()$$,
                 '42501', 'permission denied for schema webhooks', 'cms_app cannot attach the capture trigger by hand');
SELECT throws_ok($$INSERT INTO webhooks.dispatch_queue (first_event, event_ids, types, site_ids, space_ids, webhook_ids, payloads, created_ats)
                   VALUES (gen_random_uuid(), '{}', '{}', '{}', '{}', '{1}', '{}', '{}')$$,
                 '42501', 'permission denied for schema webhooks', 'cms_app cannot forge queued events');
SELECT lives_ok('DROP TABLE sec.app_owned', 'cms_app can still drop its own table (the sql_drop event trigger does not get in the way)');
RESET ROLE;

-- the app's changes were queued (as the extension owner), without the token
SELECT results_eq($$SELECT type, site_id, webhook_ids FROM webhooks.events ORDER BY created_at$$,
                  format($$VALUES ('page.created'::text, 1::bigint, ARRAY[%1$s]::bigint[]), ('page.updated', 1, ARRAY[%1$s]),
                                  ('page.created', 2, ARRAY[%1$s]), ('page.deleted', 2, ARRAY[%1$s])$$, :hook),
                  'cms_app''s INSERT, UPDATE and DELETE were queued');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE payload::text LIKE '%tok-%-secret%'), 0,
          'the excluded api_token of cms_app''s rows is in no payload');

-- even with USAGE on the schema, the table and function privileges hold
GRANT USAGE ON SCHEMA webhooks TO cms_app;
SET LOCAL ROLE cms_app;
SELECT throws_ok('SELECT secret FROM webhooks.webhooks', '42501', 'permission denied for table webhooks',
                 'with USAGE only: webhooks.webhooks is still closed');
SELECT throws_ok('SELECT * FROM webhooks.events', '42501', 'permission denied for view events',
                 'with USAGE only: webhooks.events is still closed');
SELECT throws_ok('SELECT * FROM webhooks.dispatch_queue', '42501', 'permission denied for table dispatch_queue',
                 'with USAGE only: webhooks.dispatch_queue is still closed');
SELECT throws_ok('SELECT count(*) FROM webhooks.tracked_tables', '42501', 'permission denied for table tracked_tables',
                 'with USAGE only: webhooks.tracked_tables is still closed');
SELECT throws_ok($$SELECT webhooks.create_webhook('x', 'https://evil.example/', '{*}')$$, '42501',
                 'permission denied for function create_webhook', 'with USAGE only: create_webhook is still closed');
SELECT throws_ok('SELECT webhooks.enable()', '42501', 'permission denied for function enable',
                 'with USAGE only: enable() is still closed');
SELECT throws_ok($$SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg', 1, 'body')$$, '42501',
                 'permission denied for function sign', 'with USAGE only: sign() is still closed');
SELECT throws_ok($$UPDATE webhooks.settings SET enabled = false$$, '42501', 'permission denied for table settings',
                 'with USAGE only: the switch cannot be flipped by hand');
RESET ROLE;
REVOKE USAGE ON SCHEMA webhooks FROM cms_app;
SELECT is(webhooks.is_enabled(), true, 'the switch is still on');

-- ------------------------------------------------ hook_admin, a manager ---
SET LOCAL ROLE hook_admin;
SELECT is(current_user::text, 'hook_admin', 'now running as hook_admin');
SELECT lives_ok($$SELECT webhooks.create_webhook('admin hook', 'https://example.com/admin', '{entry.*}')$$,
                'hook_admin can create a webhook');
SELECT is((SELECT count(*)::int FROM webhooks.webhooks WHERE name = 'admin hook' AND secret ~ '^whsec_'), 1,
          'hook_admin can read webhooks and their secrets');
SELECT lives_ok($$UPDATE webhooks.webhooks SET url = 'https://example.com/admin2' WHERE name = 'admin hook'$$,
                'hook_admin can update a webhook');
SELECT throws_ok($$UPDATE webhooks.webhooks SET url = 'ftp://example.com/' WHERE name = 'admin hook'$$, '22023',
                 'webhook URL "ftp://example.com/" must use http or https', 'hook_admin''s writes are validated too');
SELECT lives_ok(format('SELECT webhooks.rotate_secret(%s)', :hook), 'hook_admin can rotate a secret');
SELECT is((SELECT count(*)::int FROM webhooks.events), 4, 'hook_admin can read the queue');
SELECT lives_ok('SELECT webhooks.disable(); SELECT webhooks.enable()', 'hook_admin can flip the switch');
SELECT throws_ok('DELETE FROM webhooks.dispatch_queue', '42501', 'permission denied for table dispatch_queue',
                 'hook_admin cannot delete queued events');
SELECT throws_ok('DELETE FROM webhooks.event_store', '42501', 'permission denied for table event_store',
                 'hook_admin cannot delete dispatched events');
SELECT throws_ok($$INSERT INTO webhooks.event_store (id, type, webhook_ids, payload) VALUES (gen_random_uuid(), 'page.created', '{1}', '{}')$$,
                 '42501', 'permission denied for table event_store', 'hook_admin cannot forge events');
SELECT throws_ok($$INSERT INTO webhooks.dispatch_queue (first_event, event_ids, types, site_ids, space_ids, webhook_ids, payloads, created_ats)
                   VALUES (gen_random_uuid(), '{}', '{}', '{}', '{}', '{1}', '{}', '{}')$$,
                 '42501', 'permission denied for table dispatch_queue', 'hook_admin cannot forge queued events');
SELECT throws_ok($$INSERT INTO webhooks.event_types (name, scope, label_en, label_es) VALUES ('page.eaten', 'site', 'x', 'x')$$,
                 '42501', 'permission denied for table event_types', 'hook_admin cannot change the catalog');
SELECT throws_ok($$SELECT * FROM sec.articles$$, '42501', 'permission denied for schema sec',
                 'hook_admin gets no access to CMS data from its role');
SELECT lives_ok(format('SELECT webhooks.delete_webhook(%s)', :hook), 'hook_admin can delete a webhook');
RESET ROLE;

SELECT is((SELECT count(*)::int FROM webhooks.webhooks WHERE id = :hook), 0, 'the webhook hook_admin deleted is gone');
SELECT is((SELECT count(*)::int FROM webhooks.webhooks WHERE name = 'admin hook'), 1, 'the webhook hook_admin created is there');

SELECT * FROM finish();
ROLLBACK;
