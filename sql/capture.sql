-- Capture: which changes queue which events, with which payload.
-- webhook ids in the output start at 1 whatever ran before
SELECT setval('webhooks.webhooks_id_seq', 1, false) IS NOT NULL AS ids_reset;
\set VERBOSITY default
SET client_min_messages = notice;

\i sql/include/try.sql

-- The queued events, newest last, with the volatile parts of the payload
-- (event id, timestamps) masked.
CREATE FUNCTION pg_temp.queued() RETURNS TABLE (type text, site_id bigint, space_id bigint,
                                               webhook_ids bigint[], payload text)
LANGUAGE sql AS $$
    SELECT e.type, e.site_id, e.space_id, e.webhook_ids,
           regexp_replace(regexp_replace(e.payload::text,
               '"id":"[0-9a-f-]{36}"', '"id":"<uuid>"'),
               '"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)"', '"<time>"', 'g')
    FROM webhooks.events e ORDER BY e.created_at, e.id
$$;

CREATE TABLE pages (
    id         bigint PRIMARY KEY,
    site_id    bigint,
    title      text,
    status     text DEFAULT 'draft',
    secret     text,
    tags       text[],
    meta       jsonb,
    price      numeric,
    ratio      float8,
    visible    boolean DEFAULT true,
    updated_at timestamptz DEFAULT '2026-01-02 03:04:05.678+00'
);
SELECT webhooks.track('pages', 'page',
                      transitions => '{"status": {"published": "published", "unpublished": "unpublished"}}',
                      exclude => '{secret}');
SELECT tbl, resource, site_column, space_column, transitions, exclude FROM webhooks.tracked_tables;
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'pages'::regclass;

-- Switch off: nothing is queued even with a matching webhook.
SELECT webhooks.create_webhook('all pages', 'https://example.com/a', '{page.*}') AS all_pages \gset
INSERT INTO pages (id, site_id, title) VALUES (1, 1, 'off');
SELECT count(*) AS queued_while_off FROM webhooks.events;

-- Switch on: each kind of change, one event each.
SELECT webhooks.enable();
INSERT INTO pages (id, site_id, title, secret, tags, meta, price, ratio)
VALUES (2, 1, 'Hello "world"', 'hunter2', '{a,b}', '{"k": [1, 2]}', 12.50, 'NaN');
UPDATE pages SET status = 'published' WHERE id = 2;
UPDATE pages SET title = 'Hello again' WHERE id = 2;
UPDATE pages SET status = 'unpublished', title = 'Gone' WHERE id = 2;
DELETE FROM pages WHERE id = 2;
SELECT * FROM pg_temp.queued();

-- An UPDATE that changes nothing fires nothing; an excluded column is never sent.
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE pages SET title = title, status = status WHERE id = 1;
SELECT count(*) AS queued_for_no_change FROM webhooks.events;
UPDATE pages SET secret = 'new' WHERE id = 1;
SELECT type, payload::jsonb -> 'previous' AS previous, payload::jsonb -> 'data' ? 'secret' AS secret_sent
FROM webhooks.events;
SELECT count(*) AS payloads_with_secret FROM webhooks.events WHERE payload::text LIKE '%hunter2%' OR payload::text LIKE '%"new"%';

-- A status change to a value that is not mapped is a plain update.
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE pages SET status = 'archived' WHERE id = 1;
SELECT type FROM webhooks.events;

-- Rolled back: nothing.  Subtransaction rolled back: only what it did goes.
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
BEGIN;
INSERT INTO pages (id, site_id, title) VALUES (3, 1, 'rolled back');
ROLLBACK;
BEGIN;
INSERT INTO pages (id, site_id, title) VALUES (4, 1, 'kept');
SAVEPOINT s;
INSERT INTO pages (id, site_id, title) VALUES (5, 1, 'undone');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT type, payload::jsonb -> 'data' ->> 'title' AS title FROM webhooks.events;

-- Events are written when each statement ends (in batches), so they are
-- visible inside the transaction right after the statement; a savepoint
-- rolled back inside a function drops only its own events.
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
BEGIN;
INSERT INTO pages (id, site_id, title) SELECT g, 1, 'bulk ' || g FROM generate_series(100, 2599) g;
SELECT count(*) AS visible_after_statement FROM webhooks.events;
UPDATE pages SET title = title || '!' WHERE id BETWEEN 100 AND 2599;
SELECT type, count(*) FROM webhooks.events GROUP BY type ORDER BY type;
ROLLBACK;
SELECT count(*) AS after_rollback FROM webhooks.events;
CREATE FUNCTION pg_temp.insert_with_failing_savepoint() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pages (id, site_id, title) VALUES (20, 1, 'outer kept');
    BEGIN
        INSERT INTO pages (id, site_id, title) VALUES (21, 1, 'inner undone');
        RAISE EXCEPTION 'undo the inner block';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    INSERT INTO pages (id, site_id, title) VALUES (22, 1, 'outer kept too');
END $$;
SELECT pg_temp.insert_with_failing_savepoint();
SELECT payload::jsonb -> 'data' ->> 'title' AS title FROM webhooks.events ORDER BY created_at;
SELECT count(*) AS rows_left FROM pages WHERE id IN (20, 21, 22);
DELETE FROM pages WHERE id IN (20, 21, 22);
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;

-- One event row however many webhooks match; webhook_ids says which.
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
SELECT webhooks.create_webhook('published only', 'https://example.com/b', '{page.published}') AS published_only \gset
SELECT webhooks.create_webhook('site 2', 'https://example.com/c', '{*}', sites => '{2}') AS site2 \gset
SELECT webhooks.create_webhook('spaces only', 'https://example.com/d', '{entry.*}') AS entries \gset
SELECT webhooks.create_webhook('off', 'https://example.com/e', '{*}', enabled => false) AS disabled \gset
INSERT INTO pages (id, site_id, title) VALUES (10, 1, 'site 1'), (11, 2, 'site 2'), (12, NULL, 'no site');
UPDATE pages SET status = 'published' WHERE id IN (10, 11);
SELECT type, site_id,
       webhook_ids = ARRAY[:all_pages]::bigint[] AS all_pages_only,
       webhook_ids = ARRAY[:all_pages, :published_only]::bigint[] AS with_published,
       webhook_ids = ARRAY[:all_pages, :site2]::bigint[] AS with_site2,
       webhook_ids = ARRAY[:all_pages, :published_only, :site2]::bigint[] AS with_both
FROM webhooks.events ORDER BY created_at;

-- No webhook wants it: nothing is written.
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE webhooks.webhooks SET enabled = false WHERE id IN (:all_pages, :site2, :published_only);
INSERT INTO pages (id, site_id, title) VALUES (13, 1, 'nobody listens');
SELECT count(*) AS queued_without_subscriber FROM webhooks.events;
UPDATE webhooks.webhooks SET enabled = true WHERE id = :all_pages;

-- The space filter: entries of space 7 only.
CREATE TABLE entries (id int PRIMARY KEY, space_id int NOT NULL, title text);
SELECT webhooks.track('entries', 'entry');
UPDATE webhooks.webhooks SET spaces = '{7}' WHERE id = :entries;
INSERT INTO entries VALUES (1, 7, 'in space 7'), (2, 8, 'in space 8');
SELECT type, space_id, site_id, webhook_ids = ARRAY[:entries]::bigint[] AS to_entries_hook
FROM webhooks.events WHERE type LIKE 'entry.%';

-- Explicit site/space columns; resources site and space use their own id.
CREATE TABLE things (thing_id int PRIMARY KEY, owner_site smallint);
SELECT webhooks.track('things', 'widget', site_column => 'owner_site');
CREATE TABLE my_sites (id bigint PRIMARY KEY, name text);
SELECT webhooks.track('my_sites', 'site');
SELECT tbl, resource, site_column, space_column FROM webhooks.tracked_tables ORDER BY tbl::text;
UPDATE webhooks.webhooks SET events = '{*}' WHERE id = :all_pages;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO things VALUES (1, 9);
INSERT INTO my_sites VALUES (5, 'five');
SELECT type, site_id FROM webhooks.events ORDER BY created_at;

-- track() again replaces the configuration (idempotent).
SELECT webhooks.track('things', 'widget', site_column => 'owner_site', exclude => '{owner_site}');
SELECT webhooks.track('things', 'widget', site_column => 'owner_site', exclude => '{owner_site}');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'things'::regclass;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
UPDATE things SET owner_site = 10;
SELECT type, site_id, payload::jsonb -> 'data' AS data, payload::jsonb -> 'previous' AS previous FROM webhooks.events;

-- A column added later shows up in payloads (the cache follows ALTER TABLE).
ALTER TABLE things ADD COLUMN label text DEFAULT 'new column';
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO things VALUES (2, 9);
SELECT payload::jsonb -> 'data' AS data FROM webhooks.events;

-- Partitioned tables: the trigger on each partition uses the parent's configuration.
CREATE TABLE responses (id int, site_id int, answer text) PARTITION BY RANGE (id);
CREATE TABLE responses_1 PARTITION OF responses FOR VALUES FROM (0) TO (100);
SELECT webhooks.track('responses', 'form_response');
CREATE TABLE responses_2 PARTITION OF responses FOR VALUES FROM (100) TO (200);
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO responses VALUES (1, 1, 'a'), (150, 1, 'b');
UPDATE responses SET answer = 'c' WHERE id = 150;
SELECT type, payload::jsonb -> 'data' AS data FROM webhooks.events ORDER BY created_at;
-- written straight into a partition (no statement trigger there): the
-- events are written before the transaction commits
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
BEGIN;
INSERT INTO responses_1 VALUES (2, 1, 'direct');
COMMIT;
SELECT type, payload::jsonb -> 'data' ->> 'answer' AS answer FROM webhooks.events;

-- emit(): events that are not row changes.
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
SELECT webhooks.emit('session.login', '{"user_id": 42}', site_id => 3) IS NOT NULL AS queued;
SELECT webhooks.emit('theme.reset', NULL, site_id => 3) IS NOT NULL AS queued;
SELECT webhooks.emit('entry.published', '{"id": 1}', space_id => 8) IS NOT NULL AS queued_for_star;
SELECT * FROM pg_temp.queued();
SELECT (SELECT id FROM webhooks.events WHERE type = 'session.login') =
       (SELECT (payload::jsonb ->> 'id')::uuid FROM webhooks.events WHERE type = 'session.login') AS id_in_payload;
SELECT pg_temp.try($$SELECT webhooks.emit('session.hacked', '{}')$$);
SELECT pg_temp.try($$SELECT webhooks.emit(NULL, '{}')$$);
SELECT pg_temp.try($$SELECT webhooks.emit('entry.created', '{}', site_id => 1)$$);
SELECT pg_temp.try($$SELECT webhooks.emit('page.created', '{}', space_id => 1)$$);
UPDATE webhooks.webhooks SET enabled = false WHERE id = :all_pages;
SELECT webhooks.emit('session.login', '{}', site_id => 3) IS NULL AS not_wanted;
UPDATE webhooks.webhooks SET enabled = true WHERE id = :all_pages;
SELECT webhooks.disable();
SELECT webhooks.emit('session.login', '{}', site_id => 3) IS NULL AS nothing_while_off;
SELECT webhooks.enable();

-- Bad track() calls fail clearly and attach nothing.
CREATE VIEW pages_view AS SELECT * FROM pages;
CREATE TABLE no_site (id int PRIMARY KEY, title text);
CREATE TABLE text_site (id int PRIMARY KEY, site_id text);
SELECT count(*) AS tracked_before FROM webhooks.tracked_tables \gset
SELECT pg_temp.try($$SELECT webhooks.track('pages_view', 'page')$$);
SELECT pg_temp.try($$SELECT webhooks.track('no_site', 'page')$$);
SELECT pg_temp.try($$SELECT webhooks.track('text_site', 'page')$$);
SELECT pg_temp.try($$SELECT webhooks.track('no_site', 'banana')$$);
SELECT pg_temp.try($$SELECT webhooks.track('no_site', NULL)$$);
SELECT pg_temp.try($$SELECT webhooks.track('no_such_table', 'page')$$);
SELECT pg_temp.try($$SELECT webhooks.track('pages', 'page', space_column => 'site_id')$$);
SELECT pg_temp.try($$SELECT webhooks.track('entries', 'entry', site_column => 'space_id')$$);
SELECT pg_temp.try($$SELECT webhooks.track('pages', 'page', transitions => '{"status": {"gone": "vanished"}}')$$);
SELECT pg_temp.try($$SELECT webhooks.track('pages', 'page', transitions => '{"nope": {"x": "published"}}')$$);
SELECT pg_temp.try($$SELECT webhooks.track('pages', 'page', transitions => '{"status": "published"}')$$);
SELECT pg_temp.try($$SELECT webhooks.track('pages', 'page', transitions => '{"status": {"x": 1}}')$$);
SELECT pg_temp.try($$SELECT webhooks.track('pages', 'page', transitions => '[]')$$);
SELECT pg_temp.try($$SELECT webhooks.track('pages', 'page', exclude => '{nope}')$$);
SELECT count(*) = :tracked_before AS nothing_half_attached FROM webhooks.tracked_tables;
SELECT count(*) AS triggers_on_bad_tables FROM pg_trigger
WHERE tgrelid IN ('no_site'::regclass, 'text_site'::regclass) AND NOT tgisinternal;
-- the failed re-track of pages kept its old configuration
SELECT transitions, exclude FROM webhooks.tracked_tables WHERE tbl = 'pages'::regclass;

-- The trigger function only works as an AFTER ROW trigger of a tracked table.
SELECT pg_temp.try($$CREATE TRIGGER t BEFORE INSERT ON no_site FOR EACH ROW EXECUTE FUNCTION webhooks._capture()$$);
SELECT pg_temp.try($$INSERT INTO no_site VALUES (1, 'x')$$);
DROP TRIGGER t ON no_site;
CREATE TRIGGER t AFTER INSERT ON no_site FOR EACH ROW EXECUTE FUNCTION webhooks._capture();
SELECT pg_temp.try($$INSERT INTO no_site VALUES (1, 'x')$$);
DROP TRIGGER t ON no_site;

-- untrack
SELECT webhooks.untrack('things');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'things'::regclass;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
INSERT INTO things VALUES (3, 9);
SELECT count(*) AS queued_after_untrack FROM webhooks.events;
SELECT pg_temp.try($$SELECT webhooks.untrack('things')$$);

-- A dropped table leaves no configuration behind.
DROP TABLE my_sites;
SELECT count(*) AS config_left FROM webhooks.tracked_tables WHERE tbl::text = 'my_sites';

-- clean up
DROP TABLE pages, entries, things, responses, no_site, text_site CASCADE;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
DELETE FROM webhooks.webhooks;
SELECT webhooks.disable();
SELECT count(*) AS tracked_left FROM webhooks.tracked_tables;
