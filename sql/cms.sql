-- The example CMS fires every one of the 50 event types.
-- (pg_regress runs psql from the top of the repository)
-- webhook ids in the output start at 1 whatever ran before
SELECT setval('webhooks.webhooks_id_seq', 1, false) IS NOT NULL AS ids_reset;
SET client_min_messages = warning;
\set ECHO none
\i examples/cms.sql
\set ECHO all
RESET client_min_messages;
SELECT count(*) AS tracked_tables FROM webhooks.tracked_tables;
SELECT webhooks.create_webhook('everything', 'http://127.0.0.1:8787/hooks', '{*}') AS hook \gset
SELECT webhooks.enable();

\i examples/fire_all_events.sql

-- every catalog type was queued at least once, nothing else was
SELECT t.scope, t.name, count(e.id) AS queued
FROM webhooks.event_types t LEFT JOIN webhooks.events e ON e.type = t.name
GROUP BY t.scope, t.name ORDER BY t.scope, t.name;
SELECT count(*) AS types_never_fired
FROM webhooks.event_types t WHERE NOT EXISTS (SELECT 1 FROM webhooks.events e WHERE e.type = t.name);
SELECT count(*) AS unknown_types_queued
FROM webhooks.events e WHERE NOT EXISTS (SELECT 1 FROM webhooks.event_types t WHERE t.name = e.type);

-- ids: site events carry the site, space events the space
SELECT t.scope, count(*) AS events,
       count(*) FILTER (WHERE e.site_id IS NOT NULL AND e.space_id IS NULL) AS with_site_only,
       count(*) FILTER (WHERE e.space_id IS NOT NULL AND e.site_id IS NULL) AS with_space_only
FROM webhooks.events e JOIN webhooks.event_types t ON t.name = e.type GROUP BY t.scope ORDER BY t.scope;

-- secrets stay in the database
SELECT count(*) AS payloads_with_password_hash FROM webhooks.events WHERE payload::text LIKE '%scrypt%';
SELECT count(*) AS payloads_with_session_token FROM webhooks.events WHERE payload::text LIKE '%"token"%';

-- a few payloads in full (volatile parts masked)
SELECT e.type,
       regexp_replace(regexp_replace(e.payload::text,
           '"id":"[0-9a-f-]{36}"', '"id":"<uuid>"'),
           '"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)"', '"<time>"', 'g') AS payload
FROM webhooks.events e
WHERE e.type IN ('site.disabled', 'page.published', 'session.login', 'session.logout',
                 'profile.updated', 'entry.approved', 'widget.cloned')
ORDER BY e.created_at;

-- every payload is valid JSON whose id and type match the row
SELECT count(*) AS mismatched
FROM webhooks.events e
WHERE (e.payload::jsonb ->> 'id')::uuid <> e.id OR e.payload::jsonb ->> 'type' <> e.type
   OR (e.payload::jsonb ->> 'test')::boolean;

DROP SCHEMA cms CASCADE;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
DELETE FROM webhooks.webhooks;
SELECT webhooks.disable();
