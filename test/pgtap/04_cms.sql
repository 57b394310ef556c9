-- pgTAP: the example CMS (examples/cms.sql) fires every one of the 50
-- event types (examples/fire_all_events.sql), and keeps its secrets.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(26);

-- the CMS schema; its SELECT webhooks.track(...) lines print nothing we need
\o /dev/null
\ir ../../examples/cms.sql
\o

SELECT has_schema('cms', 'examples/cms.sql created schema cms');
SELECT is((SELECT count(*)::int FROM webhooks.tracked_tables t JOIN pg_class c ON c.oid = t.tbl
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'cms'),
          13, 'the CMS tracks 13 tables');
SELECT is((SELECT count(*)::int FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'cms' AND g.tgname = 'webhooks_capture'),
          13, 'each tracked CMS table has the capture trigger');
SELECT results_eq(
    $$SELECT exclude FROM webhooks.tracked_tables WHERE tbl = 'cms.user_profiles'::regclass$$,
    $$VALUES ('{password_hash}'::name[])$$,
    'user_profiles excludes password_hash');

SELECT webhooks.create_webhook('everything', 'http://127.0.0.1:8787/hooks', '{*}') AS hook \gset
SELECT webhooks.enable();

\o /dev/null
\ir ../../examples/fire_all_events.sql
\o

SELECT cmp_ok((SELECT count(*)::int FROM webhooks.events), '>=', 50, 'fire_all_events.sql queued at least 50 events');
SELECT results_eq(
    $$SELECT type FROM webhooks.events GROUP BY type ORDER BY type COLLATE "C"$$,
    $$SELECT name FROM webhooks.event_types ORDER BY name COLLATE "C"$$,
    'the distinct queued types are exactly the 50 catalog event types');
SELECT is((SELECT count(DISTINCT type)::int FROM webhooks.events), 50, 'fifty distinct types');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE webhook_ids <> ARRAY[:hook]::bigint[]), 0,
          'every event is for the {*} webhook');

-- envelope of every event
SELECT is((SELECT count(*)::int FROM webhooks.events e
           WHERE (e.payload ->> 'id')::uuid <> e.id OR e.payload ->> 'type' <> e.type
              OR (e.payload ->> 'test')::boolean OR e.test), 0,
          'every payload carries its event''s id and type, and test = false');
SELECT is((SELECT count(*)::int FROM webhooks.events e
           WHERE e.payload ->> 'timestamp' !~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$'), 0,
          'every payload timestamp is ISO 8601 UTC with microseconds');
SELECT is((SELECT count(*)::int FROM webhooks.events e JOIN webhooks.event_types t ON t.name = e.type
           WHERE t.scope = 'site' AND NOT (e.site_id IS NOT NULL AND e.space_id IS NULL
                                          AND (e.payload ->> 'site_id')::bigint = e.site_id
                                          AND e.payload -> 'space_id' IS NOT NULL
                                          AND (e.payload -> 'space_id')::text = 'null')), 0,
          'site events carry their site id (row and payload) and no space id');
SELECT is((SELECT count(*)::int FROM webhooks.events e JOIN webhooks.event_types t ON t.name = e.type
           WHERE t.scope = 'space' AND NOT (e.space_id = 1 AND e.site_id IS NULL
                                           AND (e.payload ->> 'space_id')::bigint = 1
                                           AND (e.payload -> 'site_id')::text = 'null')), 0,
          'space events carry their space id (row and payload) and no site id');
SELECT is((SELECT count(*)::int FROM webhooks.events e
           WHERE (SELECT array_agg(k ORDER BY k COLLATE "C") FROM json_object_keys(e.payload) k)
                 NOT IN ('{data,id,site_id,space_id,test,timestamp,type}'::text[],
                         '{data,id,previous,site_id,space_id,test,timestamp,type}'::text[])), 0,
          'every payload has exactly the envelope keys (previous only on updates)');

-- secrets stay in the database
SELECT is((SELECT count(*)::int FROM webhooks.events e, cms.user_profiles p
           WHERE strpos(e.payload::text, p.password_hash) > 0), 0,
          'the password_hash value never appears in any payload');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE strpos(payload::text, 'scrypt$not-in-payloads') > 0), 0,
          'the literal hash of fire_all_events.sql never appears either');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE strpos(payload::text, 'password_hash') > 0), 0,
          'no payload even names the password_hash column');
SELECT is((SELECT count(*)::int FROM webhooks.events e, cms.user_sessions s
           WHERE strpos(e.payload::text, s.token) > 0), 0,
          'session tokens never appear in any payload');

-- events that come from emit()
SELECT results_eq(
    $$SELECT (payload -> 'data' ->> 'profile_id')::bigint, (payload -> 'data' ->> 'session_id')::bigint, site_id
      FROM webhooks.events WHERE type = 'session.login'$$,
    $$SELECT profile_id, id, site_id FROM cms.user_sessions$$,
    'session.login is queued once, its payload names the profile and the session');
SELECT is((SELECT payload -> 'data' ->> 'profile_id' FROM webhooks.events WHERE type = 'session.login'), '1',
          'session.login payload contains profile_id 1');
SELECT results_eq(
    $$SELECT payload -> 'data' ->> 'status', payload -> 'previous' ->> 'status' FROM webhooks.events WHERE type = 'session.logout'$$,
    $$VALUES ('closed'::text, 'active'::text)$$,
    'session.logout is the session turning closed');
SELECT results_eq(
    $$SELECT (payload -> 'data' ->> 'cloned_from')::bigint, site_id FROM webhooks.events WHERE type = 'widget.cloned'$$,
    $$VALUES (1::bigint, 1::bigint)$$,
    'widget.cloned is queued once and says where the widget came from');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE type = 'widget.restored'), 1, 'widget.restored is queued once');
SELECT is((SELECT payload -> 'data' ->> 'display_name' FROM webhooks.events WHERE type = 'profile.updated'), 'Ana',
          'profile.updated carries the new display name');
SELECT results_eq($$SELECT site_id FROM webhooks.events WHERE type = 'site.deleted'$$, $$VALUES (2::bigint)$$,
                  'site.deleted is queued for the deleted site only');
SELECT is((SELECT count(*)::int FROM webhooks.events e
           WHERE NOT EXISTS (SELECT 1 FROM webhooks.event_types t WHERE t.name = e.type)), 0,
          'no event outside the catalog (e.g. navigation.created, profile.created)');

-- with the switch off the CMS keeps working and queues nothing
SELECT webhooks.disable();
SELECT count(*) AS before_off FROM webhooks.events \gset
UPDATE cms.pages SET title = 'while off';
INSERT INTO cms.sites (id, name, host) VALUES (3, 'Off', 'off.example');
SELECT is((SELECT count(*) FROM webhooks.events), :before_off::bigint, 'switch off: CMS changes queue nothing');

SELECT * FROM finish();
ROLLBACK;
