-- pgTAP: the SQL surface of the extension, the event catalog and the switch.
-- Run with: pg_prove -d <db> test/pgtap/*.sql  (extensions webhooks and pgtap installed)
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(92);

-- ------------------------------------------------------------ objects ---
SELECT has_extension('webhooks', 'extension webhooks is installed');
SELECT has_schema('webhooks', 'schema webhooks exists');
SELECT has_role('webhooks_admin', 'role webhooks_admin exists');

SELECT has_table('webhooks', 'event_types',    'table webhooks.event_types exists');
SELECT has_table('webhooks', 'settings',       'table webhooks.settings exists');
SELECT has_table('webhooks', 'webhooks',       'table webhooks.webhooks exists');
SELECT has_view('webhooks', 'events',          'view webhooks.events exists (queued and dispatched events)');
SELECT has_table('webhooks', 'dispatch_queue', 'table webhooks.dispatch_queue exists');
SELECT has_table('webhooks', 'event_store',    'table webhooks.event_store exists');
SELECT has_table('webhooks', 'tracked_tables', 'table webhooks.tracked_tables exists');
SELECT has_view('webhooks', 'active',          'view webhooks.active exists');
SELECT has_sequence('webhooks', 'webhooks_id_seq', 'sequence webhooks.webhooks_id_seq exists');

-- public functions, with their argument types and return types
SELECT has_function('webhooks', 'generate_secret', ARRAY[]::name[], 'generate_secret()');
SELECT function_returns('webhooks', 'generate_secret', ARRAY[]::name[], 'text');
SELECT has_function('webhooks', 'sign', ARRAY['text', 'text', 'bigint', 'text'], 'sign(text, text, bigint, text)');
SELECT function_returns('webhooks', 'sign', ARRAY['text', 'text', 'bigint', 'text'], 'text');
SELECT has_function('webhooks', 'is_enabled', ARRAY[]::name[], 'is_enabled()');
SELECT function_returns('webhooks', 'is_enabled', ARRAY[]::name[], 'boolean');
SELECT has_function('webhooks', 'enable', ARRAY[]::name[], 'enable()');
SELECT function_returns('webhooks', 'enable', ARRAY[]::name[], 'void');
SELECT has_function('webhooks', 'disable', ARRAY[]::name[], 'disable()');
SELECT function_returns('webhooks', 'disable', ARRAY[]::name[], 'void');
SELECT has_function('webhooks', 'create_webhook',
                    ARRAY['text', 'text', 'text[]', 'bigint[]', 'bigint[]', 'jsonb', 'text', 'boolean'],
                    'create_webhook(text, text, text[], bigint[], bigint[], jsonb, text, boolean)');
SELECT function_returns('webhooks', 'create_webhook',
                        ARRAY['text', 'text', 'text[]', 'bigint[]', 'bigint[]', 'jsonb', 'text', 'boolean'], 'bigint');
SELECT has_function('webhooks', 'delete_webhook', ARRAY['bigint'], 'delete_webhook(bigint)');
SELECT function_returns('webhooks', 'delete_webhook', ARRAY['bigint'], 'void');
SELECT has_function('webhooks', 'rotate_secret', ARRAY['bigint'], 'rotate_secret(bigint)');
SELECT function_returns('webhooks', 'rotate_secret', ARRAY['bigint'], 'text');
SELECT has_function('webhooks', 'track', ARRAY['regclass', 'text', 'name', 'name', 'jsonb', 'name[]'],
                    'track(regclass, text, name, name, jsonb, name[])');
SELECT function_returns('webhooks', 'track', ARRAY['regclass', 'text', 'name', 'name', 'jsonb', 'name[]'], 'void');
SELECT has_function('webhooks', 'untrack', ARRAY['regclass'], 'untrack(regclass)');
SELECT function_returns('webhooks', 'untrack', ARRAY['regclass'], 'void');
SELECT has_function('webhooks', 'emit', ARRAY['text', 'jsonb', 'bigint', 'bigint'], 'emit(text, jsonb, bigint, bigint)');
SELECT function_returns('webhooks', 'emit', ARRAY['text', 'jsonb', 'bigint', 'bigint'], 'uuid');
SELECT has_function('webhooks', '_capture', ARRAY[]::name[], '_capture() (the capture trigger)');
SELECT function_returns('webhooks', '_capture', ARRAY[]::name[], 'trigger');
SELECT function_lang_is('webhooks', '_capture', ARRAY[]::name[], 'c', '_capture() is written in C');
SELECT function_lang_is('webhooks', 'emit', ARRAY['text', 'jsonb', 'bigint', 'bigint'], 'c', 'emit() is written in C');

-- optional arguments of create_webhook, track and emit really are optional
SELECT is((SELECT pronargdefaults FROM pg_proc
           WHERE oid = 'webhooks.create_webhook(text, text, text[], bigint[], bigint[], jsonb, text, boolean)'::regprocedure)::int,
          5, 'create_webhook: sites, spaces, headers, secret and enabled have defaults');
SELECT is((SELECT pronargdefaults FROM pg_proc
           WHERE oid = 'webhooks.track(regclass, text, name, name, jsonb, name[])'::regprocedure)::int,
          4, 'track: site_column, space_column, transitions and exclude have defaults');
SELECT is((SELECT pronargdefaults FROM pg_proc
           WHERE oid = 'webhooks.emit(text, jsonb, bigint, bigint)'::regprocedure)::int,
          2, 'emit: site_id and space_id have defaults');

-- ------------------------------------------------- webhooks.webhooks ---
SELECT col_type_is('webhooks', 'webhooks', 'id',         'bigint',                   'webhooks.id is bigint');
SELECT col_type_is('webhooks', 'webhooks', 'name',       'text',                     'webhooks.name is text');
SELECT col_type_is('webhooks', 'webhooks', 'url',        'text',                     'webhooks.url is text');
SELECT col_type_is('webhooks', 'webhooks', 'events',     'text[]',                   'webhooks.events is text[]');
SELECT col_type_is('webhooks', 'webhooks', 'sites',      'bigint[]',                 'webhooks.sites is bigint[]');
SELECT col_type_is('webhooks', 'webhooks', 'spaces',     'bigint[]',                 'webhooks.spaces is bigint[]');
SELECT col_type_is('webhooks', 'webhooks', 'headers',    'jsonb',                    'webhooks.headers is jsonb');
SELECT col_type_is('webhooks', 'webhooks', 'secret',     'text',                     'webhooks.secret is text');
SELECT col_type_is('webhooks', 'webhooks', 'enabled',    'boolean',                  'webhooks.enabled is boolean');
SELECT col_type_is('webhooks', 'webhooks', 'created_at', 'timestamp with time zone', 'webhooks.created_at is timestamptz');
SELECT col_type_is('webhooks', 'webhooks', 'updated_at', 'timestamp with time zone', 'webhooks.updated_at is timestamptz');
SELECT col_is_pk('webhooks', 'webhooks', 'id', 'webhooks.id is the primary key');
SELECT col_not_null('webhooks', 'webhooks', 'secret', 'webhooks.secret is NOT NULL');
SELECT col_is_null('webhooks', 'webhooks', 'sites', 'webhooks.sites may be NULL (all sites)');
SELECT col_is_null('webhooks', 'webhooks', 'spaces', 'webhooks.spaces may be NULL (all spaces)');
SELECT trigger_is('webhooks', 'webhooks', 'webhooks_validate', 'webhooks', '_validate_webhook',
                  'webhooks.webhooks is validated by _validate_webhook()');

-- ---------------------------------------------------- webhooks.events ---
SELECT col_type_is('webhooks', 'events', 'id',          'uuid',     'events.id is uuid');
SELECT col_type_is('webhooks', 'events', 'type',        'text',     'events.type is text');
SELECT col_type_is('webhooks', 'events', 'site_id',     'bigint',   'events.site_id is bigint');
SELECT col_type_is('webhooks', 'events', 'space_id',    'bigint',   'events.space_id is bigint');
SELECT col_type_is('webhooks', 'events', 'webhook_ids', 'bigint[]', 'events.webhook_ids is bigint[]');
SELECT col_type_is('webhooks', 'events', 'payload',     'json',     'events.payload is json (kept byte for byte)');
SELECT col_type_is('webhooks', 'events', 'test',        'boolean',  'events.test is boolean');
SELECT col_is_pk('webhooks', 'event_store', 'id', 'event_store.id is the primary key');
SELECT col_is_pk('webhooks', 'dispatch_queue', 'first_event', 'dispatch_queue.first_event is the primary key');
SELECT col_type_is('webhooks', 'dispatch_queue', 'payloads',    'json[]',        'dispatch_queue.payloads is json[]');
SELECT col_type_is('webhooks', 'dispatch_queue', 'created_ats', 'timestamp with time zone[]', 'dispatch_queue.created_ats is timestamptz[]');
SELECT is((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
           WHERE attrelid = 'webhooks.dispatch_queue'::regclass AND attnum > 0 AND attstorage <> 'm'),
          ARRAY['first_event'], 'dispatch_queue keeps its arrays in the row (STORAGE MAIN), not in TOAST');

-- -------------------------------------------- webhooks.tracked_tables ---
SELECT col_type_is('webhooks', 'tracked_tables', 'tbl',         'regclass', 'tracked_tables.tbl is regclass');
SELECT col_type_is('webhooks', 'tracked_tables', 'transitions', 'jsonb',    'tracked_tables.transitions is jsonb');
SELECT col_type_is('webhooks', 'tracked_tables', 'exclude',     'name[]',   'tracked_tables.exclude is name[]');
SELECT col_is_pk('webhooks', 'tracked_tables', 'tbl', 'tracked_tables.tbl is the primary key');

-- ------------------------------------------------------------ catalog ---
SELECT is((SELECT count(*)::int FROM webhooks.event_types), 50, 'the catalog has exactly 50 event types');
SELECT is((SELECT count(*)::int FROM webhooks.event_types WHERE scope = 'site'), 36, '36 of them are site events');
SELECT is((SELECT count(*)::int FROM webhooks.event_types WHERE scope = 'space'), 14, '14 of them are space events');

SELECT results_eq(
    $$SELECT name FROM webhooks.event_types WHERE scope = 'site' ORDER BY name COLLATE "C"$$,
    $$SELECT n FROM unnest(ARRAY[
        'form_response.created', 'form_response.updated',
        'page.created', 'page.deleted', 'page.published', 'page.unpublished', 'page.updated',
        'session.login', 'session.logout',
        'navigation.approved', 'navigation.published', 'navigation.review_requested', 'navigation.updated',
        'profile.updated',
        'site.created', 'site.deleted', 'site.disabled', 'site.enabled', 'site.hidden', 'site.staged',
        'site.visible', 'site.updated',
        'template.approved', 'template.review_requested', 'template.updated',
        'theme.installed', 'theme.reset', 'theme.updated',
        'widget.approved', 'widget.cloned', 'widget.created', 'widget.published', 'widget.restored',
        'widget.review_requested', 'widget.unpublished', 'widget.updated']) AS n
      ORDER BY n COLLATE "C"$$,
    'the site event types are exactly the 36 of the product page');

SELECT results_eq(
    $$SELECT name FROM webhooks.event_types WHERE scope = 'space' ORDER BY name COLLATE "C"$$,
    $$SELECT n FROM unnest(ARRAY[
        'category.created', 'category.deleted', 'category.updated',
        'entry.approved', 'entry.created', 'entry.published', 'entry.review_requested',
        'entry.unpublished', 'entry.updated',
        'space.created', 'space.updated',
        'type.created', 'type.deleted', 'type.updated']) AS n
      ORDER BY n COLLATE "C"$$,
    'the space event types are exactly the 14 of the product page');

SELECT is((SELECT count(*)::int FROM webhooks.event_types
           WHERE resource <> split_part(name, '.', 1) OR action <> split_part(name, '.', 2)),
          0, 'resource and action are derived from the name');
SELECT is((SELECT action FROM webhooks.event_types WHERE name = 'navigation.review_requested'),
          'review_requested', 'action of navigation.review_requested');
SELECT is((SELECT count(*)::int FROM webhooks.event_types
           WHERE btrim(label_en) = '' OR btrim(label_es) = ''),
          0, 'every event type has an English and a Spanish label');
SELECT is((SELECT count(DISTINCT scope)::int FROM webhooks.event_types GROUP BY resource ORDER BY 1 DESC LIMIT 1),
          1, 'a resource belongs to one scope only');
SELECT throws_ok($$INSERT INTO webhooks.event_types (name, scope, label_en, label_es)
                   VALUES ('Page.Created!', 'site', 'x', 'x')$$,
                 '23514', NULL, 'event type names are checked (resource.action, lower case)');

-- ------------------------------------------------------------- switch ---
SELECT is(webhooks.is_enabled(), false, 'the switch is off after CREATE EXTENSION');
SELECT is((SELECT count(*)::int FROM webhooks.settings), 0, 'no settings row until the switch is flipped');
SELECT lives_ok('SELECT webhooks.enable()', 'enable() works');
SELECT is(webhooks.is_enabled(), true, 'enable() switches webhooks on');
SELECT lives_ok('SELECT webhooks.enable()', 'enable() twice works');
SELECT is((SELECT count(*)::int FROM webhooks.settings), 1, 'the settings table keeps a single row');
SELECT lives_ok('SELECT webhooks.disable()', 'disable() works');
SELECT is(webhooks.is_enabled(), false, 'disable() switches webhooks off');
SELECT throws_ok($$INSERT INTO webhooks.settings (singleton, enabled) VALUES (false, true)$$,
                 '23514', NULL, 'settings cannot get a second row');

SELECT * FROM finish();
ROLLBACK;
