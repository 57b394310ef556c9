-- pgTAP: capture: which row changes queue which events, for which
-- webhooks, with which payload; emit(); track()/untrack().
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(128);

-- The sorted keys of a JSON object (duplicates kept, so they would show).
CREATE FUNCTION pg_temp.keys(j json) RETURNS text[] LANGUAGE sql IMMUTABLE AS
$$ SELECT coalesce(array_agg(k ORDER BY k COLLATE "C"), '{}') FROM json_object_keys(j) AS k $$;
-- The types queued so far, in a stable order.
CREATE FUNCTION pg_temp.types() RETURNS text[] LANGUAGE sql AS
$$ SELECT coalesce(array_agg(type ORDER BY type COLLATE "C"), '{}') FROM webhooks.events $$;
-- The only queued event's payload (fails loudly if there is not exactly one).
CREATE FUNCTION pg_temp.only_payload() RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    p json;
BEGIN
    SELECT payload INTO STRICT p FROM webhooks.events;
    RETURN p;
END $$;

CREATE SCHEMA captest;
CREATE TABLE captest.pages (
    id       bigint PRIMARY KEY,
    site_id  bigint,
    title    text,
    status   text NOT NULL DEFAULT 'draft',
    secret   text,
    body     text
);

-- ------------------------------------------------------------- track ---
SELECT lives_ok($$SELECT webhooks.track('captest.pages', 'page',
                      transitions => '{"status": {"published": "published", "unpublished": "unpublished"}}',
                      exclude => '{secret}')$$, 'track() a table');
SELECT results_eq(
    $$SELECT resource, site_column, space_column, transitions, exclude
      FROM webhooks.tracked_tables WHERE tbl = 'captest.pages'::regclass$$,
    $$VALUES ('page'::text, 'site_id'::name, NULL::name,
              '{"status": {"published": "published", "unpublished": "unpublished"}}'::jsonb, '{secret}'::name[])$$,
    'tracked_tables has the configuration, site_id by default');
SELECT trigger_is('captest', 'pages', 'webhooks_capture', 'webhooks', '_capture', 'the capture trigger is attached');
SELECT is((SELECT tgtype::int FROM pg_trigger WHERE tgrelid = 'captest.pages'::regclass AND tgname = 'webhooks_capture'),
          1 + 4 + 8 + 16, 'it is an AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW trigger');

-- --------------------------------------------------------- switch off ---
SELECT webhooks.create_webhook('all pages', 'https://example.com/a', '{page.*}') AS all_pages \gset
INSERT INTO captest.pages (id, site_id, title) VALUES (1, 1, 'while off');
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'switch off: an INSERT queues nothing');
SELECT is(webhooks.emit('page.published', '{}', site_id => 1), NULL, 'switch off: emit() returns NULL');
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'switch off: emit() queues nothing');

-- ------------------------------------------------------------ created ---
SELECT webhooks.enable();
INSERT INTO captest.pages (id, site_id, title, secret, body)
VALUES (2, 1, 'Hello "world"', 'hunter2-excluded', 'Body');
SELECT results_eq($$SELECT type, site_id, space_id, webhook_ids, test FROM webhooks.events$$,
                  format($$VALUES ('page.created'::text, 1::bigint, NULL::bigint, ARRAY[%s]::bigint[], false)$$, :all_pages),
                  'INSERT queues one page.created for site 1, for the matching webhook');
SELECT is(pg_temp.keys(pg_temp.only_payload()), '{data,id,site_id,space_id,test,timestamp,type}'::text[],
          'payload keys are exactly id, type, timestamp, site_id, space_id, data, test');
SELECT matches(pg_temp.only_payload() ->> 'timestamp', '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$',
               'payload timestamp is ISO 8601 UTC with microseconds');
SELECT is((SELECT (payload ->> 'timestamp')::timestamptz FROM webhooks.events), (SELECT created_at FROM webhooks.events),
          'payload timestamp is the event''s created_at');
SELECT is((SELECT (payload ->> 'id')::uuid FROM webhooks.events), (SELECT id FROM webhooks.events),
          'payload id is events.id');
SELECT is((SELECT substr(id::text, 15, 1) FROM webhooks.events), '7', 'event ids are UUID version 7');
SELECT is(pg_temp.only_payload() ->> 'type', 'page.created', 'payload type');
SELECT is((pg_temp.only_payload() -> 'test')::text, 'false', 'payload test is false');
SELECT is((pg_temp.only_payload() -> 'site_id')::text, '1', 'payload site_id');
SELECT is((pg_temp.only_payload() -> 'space_id')::text, 'null', 'payload space_id is null for a site event');
SELECT is((pg_temp.only_payload() -> 'data')::jsonb,
          (SELECT to_jsonb(p) - 'secret' FROM captest.pages p WHERE id = 2),
          'payload data is the new row without the excluded column');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE payload::text LIKE '%hunter2-excluded%'), 0,
          'the excluded column''s value appears nowhere in the payload');

-- ------------------------------------------------- updates, transitions ---
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET status = 'published' WHERE id = 2;
SELECT is(pg_temp.types(), '{page.published}'::text[], 'UPDATE of status to published queues page.published only');
SELECT is(pg_temp.keys(pg_temp.only_payload()), '{data,id,previous,site_id,space_id,test,timestamp,type}'::text[],
          'an update payload adds previous');
SELECT is((pg_temp.only_payload() -> 'previous')::jsonb, '{"status": "draft"}'::jsonb,
          'previous holds the old values of the changed columns only');
SELECT is(pg_temp.only_payload() -> 'data' ->> 'status', 'published', 'data holds the new row');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET title = 'Hello again' WHERE id = 2;
SELECT is(pg_temp.types(), '{page.updated}'::text[], 'UPDATE of another column queues page.updated');
SELECT is((pg_temp.only_payload() -> 'previous')::jsonb, '{"title": "Hello \"world\""}'::jsonb, 'previous of page.updated');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET status = 'unpublished', title = 'Gone' WHERE id = 2;
SELECT is(pg_temp.types(), '{page.unpublished}'::text[], 'a transition together with other changes queues the transition only');
SELECT is((pg_temp.only_payload() -> 'previous')::jsonb, '{"title": "Hello again", "status": "published"}'::jsonb,
          'previous has every changed column');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET status = 'archived' WHERE id = 2;
SELECT is(pg_temp.types(), '{page.updated}'::text[], 'a change to an unmapped value is a plain update');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET status = 'published' WHERE id = 2;
SELECT is(pg_temp.types(), '{page.published}'::text[], 'the transition fires whatever the old value was');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET title = title, status = status, body = body WHERE id = 2;
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'an UPDATE that changes nothing queues nothing');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET secret = 'rotated-secret-value' WHERE id = 2;
SELECT is(pg_temp.types(), '{page.updated}'::text[], 'changing only the excluded column is a page.updated');
SELECT is((pg_temp.only_payload() -> 'previous')::jsonb, '{}'::jsonb, 'whose previous is empty');
SELECT ok(NOT (pg_temp.only_payload() -> 'data')::jsonb ? 'secret', 'data has no key for the excluded column');
SELECT is((SELECT count(*)::int FROM webhooks.events
           WHERE payload::text LIKE '%rotated-secret-value%' OR payload::text LIKE '%hunter2-excluded%'), 0,
          'neither the old nor the new excluded value appears in the payload');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET body = 'multi' WHERE id IN (1, 2);
SELECT is(pg_temp.types(), '{page.updated,page.updated}'::text[], 'a multi-row UPDATE queues one event per row');

-- ------------------------------------------------------------- deleted ---
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
DELETE FROM captest.pages WHERE id = 2;
SELECT is(pg_temp.types(), '{page.deleted}'::text[], 'DELETE queues page.deleted');
SELECT is(pg_temp.only_payload() -> 'data' ->> 'id', '2', 'page.deleted carries the deleted row');
SELECT is(pg_temp.keys(pg_temp.only_payload()), '{data,id,site_id,space_id,test,timestamp,type}'::text[],
          'page.deleted has no previous');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE payload::text LIKE '%rotated-secret-value%'), 0,
          'the excluded value is not in the page.deleted payload either');

-- ------------------------------------ resources without some actions ---
CREATE TABLE captest.navs (id int PRIMARY KEY, site_id int NOT NULL, items jsonb, status text);
SELECT webhooks.track('captest.navs', 'navigation', transitions => '{"status": {"in_review": "review_requested"}}');
UPDATE webhooks.webhooks SET events = '{page.*,navigation.*}' WHERE id = :all_pages;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.navs VALUES (1, 1, '[]', 'draft');
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'no event for an INSERT when <resource>.created is not in the catalog');
UPDATE captest.navs SET status = 'in_review';
SELECT is(pg_temp.types(), '{navigation.review_requested}'::text[], 'a transition to review_requested');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
DELETE FROM captest.navs;
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'no event for a DELETE when <resource>.deleted is not in the catalog');

-- boolean transitions, and resource "site" uses its own id
CREATE TABLE captest.sites (id smallint PRIMARY KEY, name text, enabled boolean NOT NULL DEFAULT true);
SELECT webhooks.track('captest.sites', 'site', transitions => '{"enabled": {"true": "enabled", "false": "disabled"}}');
SELECT is((SELECT site_column FROM webhooks.tracked_tables WHERE tbl = 'captest.sites'::regclass), 'id'::name,
          'resource site takes its site id from column id');
UPDATE webhooks.webhooks SET events = '{page.*,navigation.*,site.*}' WHERE id = :all_pages;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.sites VALUES (5, 'five');
UPDATE captest.sites SET enabled = false;
UPDATE captest.sites SET enabled = true;
SELECT results_eq($$SELECT type, site_id FROM webhooks.events ORDER BY created_at, type$$,
                  $$VALUES ('site.created'::text, 5::bigint), ('site.disabled', 5), ('site.enabled', 5)$$,
                  'boolean transitions are named true/false; the site id comes from a smallint id column');

-- ------------------------------------------------------------- filters ---
SELECT webhooks.create_webhook('published only', 'https://example.com/b', '{page.published}') AS published_only \gset
SELECT webhooks.create_webhook('site 2', 'https://example.com/c', '{*}', sites => '{2}') AS site2 \gset
SELECT webhooks.create_webhook('entries of space 7', 'https://example.com/d', '{entry.*}', spaces => '{7}') AS space7 \gset
SELECT webhooks.create_webhook('disabled', 'https://example.com/e', '{*}', enabled => false) AS disabled \gset
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title) VALUES (10, 1, 'site 1'), (11, 2, 'site 2'), (12, NULL, 'no site');
SELECT results_eq($$SELECT site_id, webhook_ids FROM webhooks.events WHERE type = 'page.created' ORDER BY site_id NULLS LAST$$,
                  format($$VALUES (1::bigint, ARRAY[%1$s]::bigint[]), (2, ARRAY[%1$s, %2$s]::bigint[]), (NULL, ARRAY[%1$s]::bigint[])$$,
                         :all_pages, :site2),
                  'site filter: the site-2 webhook gets site 2 only, not site 1 nor events without a site');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET status = 'published' WHERE id IN (10, 11);
SELECT results_eq($$SELECT site_id, webhook_ids FROM webhooks.events ORDER BY site_id$$,
                  format($$VALUES (1::bigint, ARRAY[%1$s, %2$s]::bigint[]), (2, ARRAY[%1$s, %2$s, %3$s]::bigint[])$$,
                         :all_pages, :published_only, :site2),
                  'event filter: the page.published webhook joins for page.published');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE captest.pages SET title = 'only updated' WHERE id = 10;
SELECT is((SELECT webhook_ids FROM webhooks.events), ARRAY[:all_pages]::bigint[],
          'event filter: the page.published webhook is not in page.updated');

CREATE TABLE captest.entries (id int PRIMARY KEY, space_id int NOT NULL, title text);
SELECT webhooks.track('captest.entries', 'entry');
SELECT is((SELECT space_column FROM webhooks.tracked_tables WHERE tbl = 'captest.entries'::regclass), 'space_id'::name,
          'a space resource takes space_id by default');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.entries VALUES (1, 7, 'in space 7'), (2, 8, 'in space 8');
SELECT results_eq($$SELECT space_id, site_id, webhook_ids FROM webhooks.events ORDER BY space_id$$,
                  format($$VALUES (7::bigint, NULL::bigint, ARRAY[%1$s, %2$s]::bigint[]), (8, NULL, ARRAY[%1$s]::bigint[])$$,
                         :site2, :space7),
                  'space filter: the space-7 webhook gets space 7 only (a sites filter does not apply to space events)');
SELECT is((SELECT (payload -> 'space_id')::text || ',' || (payload -> 'site_id')::text FROM webhooks.events WHERE space_id = 7),
          '7,null', 'a space event has space_id and a null site_id in its payload');
SELECT is((SELECT count(*)::int FROM webhooks.events e, webhooks.webhooks w
           WHERE w.id = ANY (e.webhook_ids) AND NOT w.enabled), 0, 'a disabled webhook is in no webhook_ids');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE :disabled = ANY (webhook_ids)), 0,
          'the disabled webhook in particular');

-- a webhook that is enabled later starts receiving (the cache follows)
UPDATE webhooks.webhooks SET enabled = true WHERE id = :disabled;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.entries VALUES (3, 9, 'x');
SELECT is((SELECT webhook_ids FROM webhooks.events), ARRAY[:site2, :disabled]::bigint[],
          'enabling a webhook adds it to webhook_ids of the next change');
-- a changed filter is honoured at once
UPDATE webhooks.webhooks SET spaces = '{9}' WHERE id = :space7;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.entries VALUES (4, 9, 'y');
SELECT is((SELECT webhook_ids FROM webhooks.events), ARRAY[:site2, :space7, :disabled]::bigint[],
          'changing a webhook''s spaces is honoured at once');
-- deleted webhooks are gone at once
SELECT webhooks.delete_webhook(:disabled);
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.entries VALUES (5, 9, 'z');
SELECT is((SELECT webhook_ids FROM webhooks.events), ARRAY[:site2, :space7]::bigint[], 'a deleted webhook is gone at once');

-- no webhook wants it: nothing is written
UPDATE webhooks.webhooks SET enabled = false;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title) VALUES (13, 1, 'nobody listens');
UPDATE captest.pages SET title = 'still nobody' WHERE id = 13;
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'no matching webhook: nothing is queued');

-- one row however many webhooks match
SELECT array_agg(webhooks.create_webhook('hook ' || i, 'https://example.com/' || i, '{page.created}') ORDER BY i) AS ten
FROM generate_series(1, 10) AS i \gset
INSERT INTO captest.pages (id, site_id, title) VALUES (14, 1, 'ten listeners');
SELECT is((SELECT count(*)::int FROM webhooks.events), 1, 'ten matching webhooks: one queued row');
SELECT is((SELECT webhook_ids FROM webhooks.events), :'ten'::bigint[], 'whose webhook_ids are the ten webhooks, in id order');

-- switching off stops everything at once, switching on resumes
SELECT webhooks.disable();
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title) VALUES (15, 1, 'off again');
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'disable(): nothing is queued');
SELECT webhooks.enable();
INSERT INTO captest.pages (id, site_id, title) VALUES (16, 1, 'on again');
SELECT is((SELECT count(*)::int FROM webhooks.events), 1, 'enable(): changes are queued again');

-- --------------------------------------------------- subtransactions ---
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title) VALUES (20, 1, 'kept');
SAVEPOINT sp;
INSERT INTO captest.pages (id, site_id, title) VALUES (21, 1, 'undone');
ROLLBACK TO SAVEPOINT sp;
RELEASE SAVEPOINT sp;
SELECT results_eq($$SELECT payload -> 'data' ->> 'title' FROM webhooks.events$$, $$VALUES ('kept')$$,
                  'a rolled-back subtransaction queues nothing, the rest stays');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
SAVEPOINT sp;
SELECT webhooks.disable();
ROLLBACK TO SAVEPOINT sp;
RELEASE SAVEPOINT sp;
INSERT INTO captest.pages (id, site_id, title) VALUES (22, 1, 'after a rolled-back disable');
SELECT is((SELECT count(*)::int FROM webhooks.events), 1, 'a rolled-back disable() does not switch capture off');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
SAVEPOINT sp;
SELECT webhooks.create_webhook('ghost', 'https://example.com/ghost', '{*}') AS ghost \gset
ROLLBACK TO SAVEPOINT sp;
RELEASE SAVEPOINT sp;
INSERT INTO captest.pages (id, site_id, title) VALUES (23, 1, 'after a rolled-back create');
SELECT is((SELECT webhook_ids FROM webhooks.events), :'ten'::bigint[], 'a rolled-back create_webhook() matches nothing');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
SAVEPOINT sp;
SELECT webhooks.track('captest.pages', 'page', exclude => '{}');
INSERT INTO captest.pages (id, site_id, title, secret) VALUES (24, 1, 'inside', 'inside-secret');
ROLLBACK TO SAVEPOINT sp;
RELEASE SAVEPOINT sp;
INSERT INTO captest.pages (id, site_id, title, secret) VALUES (25, 1, 'after', 'leak-after-rollback');
SELECT is((SELECT count(*)::int FROM webhooks.events WHERE payload::text LIKE '%leak-after-rollback%'), 0,
          'a rolled-back re-track() without exclude does not leak the excluded column');

TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
SAVEPOINT sp;
SELECT webhooks.untrack('captest.pages');
ROLLBACK TO SAVEPOINT sp;
RELEASE SAVEPOINT sp;
INSERT INTO captest.pages (id, site_id, title) VALUES (26, 1, 'after a rolled-back untrack');
SELECT is((SELECT count(*)::int FROM webhooks.events), 1, 'a rolled-back untrack() keeps the table tracked');

-- ------------------------------------------------ trigger WHEN clause ---
-- rows of a tracked table whose events nobody wants never reach the trigger
-- function: its WHEN clause answers no once this backend's caches are loaded
SET LOCAL track_functions = 'all';
SELECT is((SELECT pg_get_triggerdef(oid) LIKE '%WHEN (webhooks._capture_wanted(''captest.entries''::regclass))%'
           FROM pg_trigger WHERE tgrelid = 'captest.entries'::regclass AND tgname = 'webhooks_capture'),
          true, 'the capture trigger has a WHEN clause naming its table');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.entries VALUES (500, 1, 'loads the caches');
SELECT coalesce(pg_stat_get_xact_function_calls('webhooks._capture'::regproc), 0) AS calls_before \gset
INSERT INTO captest.entries SELECT 500 + i, 1, 'nobody wants entries' FROM generate_series(1, 50) i;
UPDATE captest.entries SET title = 'still nobody' WHERE id >= 500;
DELETE FROM captest.entries WHERE id >= 500;
SELECT is(coalesce(pg_stat_get_xact_function_calls('webhooks._capture'::regproc), 0) - :calls_before, 0::bigint,
          'changes nobody subscribed to never call the trigger function');
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'and queue nothing');
SELECT coalesce(pg_stat_get_xact_function_calls('webhooks._capture'::regproc), 0) AS calls_before \gset
INSERT INTO captest.pages (id, site_id, title) SELECT 300 + i, 1, 'wanted' FROM generate_series(1, 5) i;
SELECT is(coalesce(pg_stat_get_xact_function_calls('webhooks._capture'::regproc), 0) - :calls_before, 5::bigint,
          'rows of a table whose events are wanted call it once each');
SELECT is((SELECT count(*)::int FROM webhooks.events), 5, 'and are queued');
DELETE FROM captest.pages WHERE id > 300;

-- ------------------------------------------------------ dispatch queue ---
-- every written event is listed once in webhooks.dispatch_queue, 32 a row
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
DELETE FROM webhooks.dispatch_queue;
INSERT INTO captest.pages (id, site_id, title) SELECT 100 + i, 1, 'queued ' || i FROM generate_series(1, 70) i;
SELECT is((SELECT array_agg(cardinality(event_ids) ORDER BY first_event) FROM webhooks.dispatch_queue),
          ARRAY[32, 32, 6], '70 events of one statement are listed in 3 dispatch_queue rows (32, 32, 6)');
SELECT set_eq($$SELECT unnest(event_ids) FROM webhooks.dispatch_queue$$, $$SELECT id FROM webhooks.events$$,
              'the dispatch queue lists exactly the events written');
SELECT is((SELECT count(*)::int FROM webhooks.dispatch_queue q
           WHERE q.first_event <> (SELECT min(u::text)::uuid FROM unnest(q.event_ids) u)), 0,
          'each queue row is keyed by its smallest event id');
SELECT is((SELECT count(*)::int FROM (
               SELECT id, lag(id) OVER (ORDER BY (payload -> 'data' ->> 'id')::int) AS prev
               FROM webhooks.events) s WHERE prev IS NOT NULL AND id <= prev), 0,
          'event ids made by one backend strictly increase, even within a millisecond');
SELECT is((SELECT count(*)::int FROM webhooks.events
           WHERE substr(id::text, 15, 1) <> '7' OR substr(id::text, 20, 1) NOT IN ('8', '9', 'a', 'b')), 0,
          'event ids are RFC 9562 version 7 UUIDs');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
DELETE FROM webhooks.dispatch_queue;
SAVEPOINT sp;
INSERT INTO captest.pages (id, site_id, title) VALUES (200, 1, 'undone');
ROLLBACK TO SAVEPOINT sp;
RELEASE SAVEPOINT sp;
SELECT is((SELECT count(*)::int FROM webhooks.dispatch_queue), 0,
          'a rolled-back subtransaction leaves nothing in the dispatch queue');

-- a queue row holds consecutive events that matched the same webhooks, with
-- every per-event column as an array, and at most 16 kB of JSON
SELECT webhooks.create_webhook('site 7 only', 'https://example.com/s7', '{page.*}', sites => '{7}') AS site7 \gset
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title)
SELECT 400 + i, CASE WHEN i <= 3 THEN 1 ELSE 7 END, 'split ' || i FROM generate_series(1, 5) i ORDER BY i;
SELECT results_eq(format($$SELECT cardinality(event_ids), site_ids, %s = ANY (webhook_ids)
                           FROM webhooks.dispatch_queue ORDER BY first_event$$, :site7),
                  $$VALUES (3, '{1,1,1}'::bigint[], false), (2, '{7,7}', true)$$,
                  'events that matched other webhooks start a new queue row');
SELECT is((SELECT count(*)::int FROM webhooks.dispatch_queue
           WHERE cardinality(types) <> cardinality(event_ids) OR cardinality(space_ids) <> cardinality(event_ids)
              OR cardinality(payloads) <> cardinality(event_ids) OR cardinality(created_ats) <> cardinality(event_ids)), 0,
          'every per-event array of a queue row has one element per event');
SELECT results_eq($$SELECT id, site_id, space_id, payload::text, created_at FROM webhooks.events ORDER BY id$$,
                  $$SELECT u.id, u.site, u.space, u.payload::text, u.at FROM webhooks.dispatch_queue q,
                      unnest(q.event_ids, q.site_ids, q.space_ids, q.payloads, q.created_ats) AS u(id, site, space, payload, at)
                    ORDER BY u.id$$,
                  'webhooks.events shows each queued event with its own site, space, payload and time');
SELECT is((SELECT count(*)::int FROM (SELECT created_at, lag(created_at) OVER (ORDER BY id) AS prev
                                      FROM webhooks.events) s WHERE created_at < prev), 0,
          'capture times never go backwards in id order');
DELETE FROM webhooks.webhooks WHERE id = :site7;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title, body)
SELECT 420 + i, 1, 'big ' || i, repeat(md5(i::text), 125) FROM generate_series(1, 10) i ORDER BY i;
SELECT is((SELECT array_agg(cardinality(event_ids) ORDER BY first_event) FROM webhooks.dispatch_queue),
          ARRAY[3, 3, 3, 1], 'payloads of 4 kB: three to a queue row (at most 16 kB of JSON a row)');
SELECT is((SELECT count(*)::int FROM webhooks.dispatch_queue
           WHERE (SELECT sum(octet_length(p::text)) FROM unnest(payloads) p) > 16384), 0,
          'no queue row holds more than 16 kB of JSON');
SELECT is((SELECT count(*)::int FROM webhooks.dispatch_queue
           WHERE pg_column_size(payloads) > 8000), 0, 'and compressed, each fits in its heap tuple');
DELETE FROM captest.pages WHERE id > 400;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;

-- large payloads are stored compressed, and read back exactly
INSERT INTO captest.pages (id, site_id, title, body) VALUES (201, 1, 'long', repeat('lorem ipsum ', 100));
SELECT is((SELECT pg_column_compression(payloads) FROM webhooks.dispatch_queue), 'lz4',
          'the payloads of a queue row of 256 bytes or more are stored LZ4-compressed');
SELECT is(pg_temp.only_payload() -> 'data' ->> 'body', repeat('lorem ipsum ', 100),
          'the compressed payload reads back exactly');
SELECT ok((SELECT pg_column_size(payloads) < octet_length(payloads::text) / 4 FROM webhooks.dispatch_queue),
          'and takes a fraction of the space');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title) VALUES (202, 1, 's');
SELECT is((SELECT pg_column_compression(payload) FROM webhooks.events), NULL,
          'a short payload is stored as it is');

-- ----------------------------------------------------------- schema changes ---
ALTER TABLE captest.pages ADD COLUMN label text DEFAULT 'new column';
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.pages (id, site_id, title) VALUES (27, 1, 'with label');
SELECT is(pg_temp.only_payload() -> 'data' ->> 'label', 'new column', 'a column added later shows up in payloads');

CREATE TABLE captest.responses (id int, site_id int, answer text) PARTITION BY RANGE (id);
CREATE TABLE captest.responses_1 PARTITION OF captest.responses FOR VALUES FROM (0) TO (100);
SELECT webhooks.track('captest.responses', 'form_response');
CREATE TABLE captest.responses_2 PARTITION OF captest.responses FOR VALUES FROM (100) TO (200);
UPDATE webhooks.webhooks SET events = '{form_response.*}' WHERE id = :all_pages;
UPDATE webhooks.webhooks SET enabled = true WHERE id = :all_pages;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.responses VALUES (1, 1, 'a'), (150, 3, 'b');
UPDATE captest.responses SET answer = 'c' WHERE id = 150;
SELECT results_eq($$SELECT type, site_id FROM webhooks.events ORDER BY site_id, type$$,
                  $$VALUES ('form_response.created'::text, 1::bigint), ('form_response.created', 3), ('form_response.updated', 3)$$,
                  'a partitioned table: both partitions, even one created after track(), use its configuration');

-- ---------------------------------------------------------------- emit ---
UPDATE webhooks.webhooks SET enabled = false;
SELECT is(webhooks.emit('session.login', '{"user_id": 42}', site_id => 3), NULL, 'emit() returns NULL when no webhook wants the event');
SELECT webhooks.create_webhook('star', 'https://example.com/star', '{*}') AS star \gset
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
SELECT webhooks.emit('session.login', '{"user_id": 42}', site_id => 3) AS login_id \gset
SELECT isnt(:'login_id'::uuid, NULL, 'emit() returns the event id');
SELECT results_eq(format($$SELECT type, site_id, space_id, webhook_ids, test FROM webhooks.events WHERE id = %L$$, :'login_id'),
                  format($$VALUES ('session.login'::text, 3::bigint, NULL::bigint, ARRAY[%s]::bigint[], false)$$, :star),
                  'the emitted event is queued under that id');
SELECT results_eq(format($$SELECT (payload ->> 'id')::uuid, (payload -> 'data')::jsonb, pg_temp.keys(payload)
                           FROM webhooks.events WHERE id = %L$$, :'login_id'),
                  format($$VALUES (%L::uuid, '{"user_id": 42}'::jsonb, '{data,id,site_id,space_id,test,timestamp,type}'::text[])$$,
                         :'login_id'),
                  'its payload: same id, the given data, the same envelope as captured rows');
SELECT matches((SELECT payload ->> 'timestamp' FROM webhooks.events WHERE id = :'login_id'),
               '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$', 'emitted payload timestamp format');
SELECT webhooks.emit('theme.reset', NULL, site_id => 3) AS reset_id \gset
SELECT is((SELECT (payload -> 'data')::text FROM webhooks.events WHERE id = :'reset_id'), '{}', 'NULL data is sent as {}');
SELECT webhooks.emit('entry.published', '{"id": 1}', space_id => 8) AS entry_id \gset
SELECT results_eq(format($$SELECT site_id, space_id, (payload -> 'space_id')::text FROM webhooks.events WHERE id = %L$$, :'entry_id'),
                  $$VALUES (NULL::bigint, 8::bigint, '8'::text)$$, 'a space event is emitted with its space');
SELECT throws_ok($$SELECT webhooks.emit('session.hacked', '{}')$$, '22023', 'unknown event type "session.hacked"',
                 'emit() of an unknown type');
SELECT throws_ok($$SELECT webhooks.emit(NULL, '{}')$$, '22004', 'event type must not be null', 'emit() of a NULL type');
SELECT throws_ok($$SELECT webhooks.emit('entry.created', '{}', site_id => 1)$$, '22023',
                 'event type "entry.created" belongs to spaces and takes no site_id', 'emit() of a space event with a site_id');
SELECT throws_ok($$SELECT webhooks.emit('page.created', '{}', space_id => 1)$$, '22023',
                 'event type "page.created" belongs to sites and takes no space_id', 'emit() of a site event with a space_id');
SELECT is((SELECT count(*)::int FROM webhooks.events), 3, 'failed emit() calls queued nothing');

-- ------------------------------------------------------ track() errors ---
CREATE VIEW captest.pages_view AS SELECT * FROM captest.pages;
CREATE TABLE captest.no_site (id int PRIMARY KEY, title text);
CREATE TABLE captest.text_site (id int PRIMARY KEY, site_id text);
CREATE TABLE captest.drafts (id int PRIMARY KEY, site_id bigint, status text);
SELECT count(*) AS tracked_before FROM webhooks.tracked_tables \gset
SELECT throws_ok($$SELECT webhooks.track('captest.pages_view', 'page')$$, '42809', 'captest.pages_view is not a table',
                 'track() of a view');
SELECT throws_ok($$SELECT webhooks.track('captest.no_site', 'page')$$, '42703',
                 'column "site_id" of table captest.no_site does not exist', 'track() without the site column');
SELECT throws_ok($$SELECT webhooks.track('captest.no_site', 'page', site_column => 'nope')$$, '42703',
                 'column "nope" of table captest.no_site does not exist', 'track() with a missing explicit site column');
SELECT throws_ok($$SELECT webhooks.track('captest.text_site', 'page')$$, '42804',
                 'column "site_id" of table captest.text_site has type text, not an integer type', 'track() with a text site column');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', 'banana')$$, '22023', 'unknown resource "banana"',
                 'track() with an unknown resource');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', NULL)$$, '22004', 'table and resource must not be null',
                 'track() with a NULL resource');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', 'page', transitions => '{"status": {"gone": "vanished"}}')$$,
                 '22023', 'event type "page.vanished" does not exist', 'track() with an unknown transition action');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', 'page', transitions => '{"status": {"x": "created "}}')$$,
                 '22023', 'event type "page.created " does not exist', 'track() with a misspelt transition action');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', 'page', transitions => '{"nope": {"x": "published"}}')$$,
                 '42703', 'column "nope" of table captest.drafts does not exist', 'track() with a missing transition column');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', 'page', transitions => '[]')$$,
                 '22023', 'transitions must be a JSON object mapping columns to {value: action}', 'track() with non-object transitions');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', 'page', exclude => '{nope}')$$,
                 '42703', 'column "nope" of table captest.drafts does not exist', 'track() excluding a missing column');
SELECT throws_ok($$SELECT webhooks.track('captest.drafts', 'page', space_column => 'site_id')$$,
                 '22023', 'resource "page" belongs to sites and takes no space column', 'track() of a site resource with a space column');
SELECT throws_ok($$SELECT webhooks.track('captest.pages', 'page', transitions => '{"status": {"x": 1}}')$$,
                 '22023', 'action for value "x" of column "status" must be a string', 'a bad re-track() of a tracked table');
SELECT is((SELECT count(*) FROM webhooks.tracked_tables), :tracked_before::bigint, 'no failed track() added a tracked_tables row');
SELECT is((SELECT count(*)::int FROM pg_trigger
           WHERE tgrelid IN ('captest.no_site'::regclass, 'captest.text_site'::regclass, 'captest.drafts'::regclass)),
          0, 'no failed track() attached a trigger');
SELECT hasnt_trigger('captest', 'drafts', 'webhooks_capture', 'in particular none on captest.drafts');
SELECT results_eq($$SELECT transitions, exclude FROM webhooks.tracked_tables WHERE tbl = 'captest.pages'::regclass$$,
                  $$VALUES ('{"status": {"published": "published", "unpublished": "unpublished"}}'::jsonb, '{secret}'::name[])$$,
                  'the failed re-track() kept the old configuration');

-- track() twice is idempotent: one row trigger and one statement trigger
SELECT webhooks.track('captest.entries', 'entry');
SELECT is((SELECT array_agg(tgname::text ORDER BY tgname::text) FROM pg_trigger
           WHERE tgrelid = 'captest.entries'::regclass AND NOT tgisinternal),
          ARRAY['webhooks_capture', 'webhooks_capture_flush'],
          'track() twice leaves one row trigger and one statement trigger');

-- ---------------------------------------------------------- untrack ---
SELECT lives_ok($$SELECT webhooks.untrack('captest.entries')$$, 'untrack() works');
SELECT hasnt_trigger('captest', 'entries', 'webhooks_capture', 'untrack() removes the trigger');
SELECT is((SELECT count(*)::int FROM webhooks.tracked_tables WHERE tbl = 'captest.entries'::regclass), 0,
          'untrack() removes the configuration');
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO captest.entries VALUES (10, 7, 'untracked');
SELECT is((SELECT count(*)::int FROM webhooks.events), 0, 'an untracked table queues nothing');
SELECT throws_ok($$SELECT webhooks.untrack('captest.entries')$$, '42704', 'table captest.entries is not tracked',
                 'untrack() of a table that is not tracked');

-- a dropped table leaves no configuration behind
SELECT count(*) AS tracked_before_drop FROM webhooks.tracked_tables \gset
DROP TABLE captest.sites;
SELECT is((SELECT count(*) FROM webhooks.tracked_tables), :tracked_before_drop::bigint - 1,
          'DROP TABLE removes the tracked_tables row');

-- the trigger only works on a tracked table, as an AFTER ROW trigger
CREATE TRIGGER t AFTER INSERT ON captest.no_site FOR EACH ROW EXECUTE FUNCTION webhooks._capture();
SELECT throws_ok($$INSERT INTO captest.no_site VALUES (1, 'x')$$, '55000', 'table "no_site" is not tracked by webhooks',
                 'the capture trigger on a table that is not tracked fails clearly');
DROP TRIGGER t ON captest.no_site;
CREATE TRIGGER t BEFORE INSERT ON captest.no_site FOR EACH ROW EXECUTE FUNCTION webhooks._capture();
SELECT throws_ok($$INSERT INTO captest.no_site VALUES (1, 'x')$$, '39P01',
                 'webhooks._capture() must be an AFTER ... FOR EACH ROW trigger', 'as a BEFORE trigger it refuses to run');
DROP TRIGGER t ON captest.no_site;
SELECT throws_ok($$SELECT webhooks._capture()$$, '39P01', 'webhooks._capture() must be called as a trigger',
                 'it cannot be called directly');

SELECT * FROM finish();
ROLLBACK;
