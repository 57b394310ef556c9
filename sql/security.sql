-- Privileges: PUBLIC gets nothing; webhooks_admin manages webhooks; a CMS
-- role with no rights on the schema still fires events.
\set VERBOSITY default
SET client_min_messages = warning;

\i sql/include/try.sql
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;

CREATE ROLE regress_cms_app NOLOGIN;
CREATE ROLE regress_hook_admin NOLOGIN IN ROLE webhooks_admin;
CREATE SCHEMA regress_cms AUTHORIZATION regress_hook_admin;
GRANT USAGE ON SCHEMA regress_cms TO regress_cms_app;

-- nothing in the schema is open to PUBLIC
SELECT c.relname, has_table_privilege('regress_cms_app', c.oid, 'SELECT') AS can_select,
       has_table_privilege('regress_cms_app', c.oid, 'INSERT') AS can_insert
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'webhooks' AND c.relkind IN ('r', 'v') ORDER BY c.relname;
-- one function is executable by everyone: the capture trigger's WHEN clause
-- runs it as the writing role; without USAGE on the schema it cannot be
-- called by name
SELECT p.oid::regprocedure AS functions_open_to_public
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'webhooks' AND has_function_privilege('regress_cms_app', p.oid, 'EXECUTE');

-- the CMS's own table, owned by the admin, written by the app role
SET ROLE regress_hook_admin;
CREATE TABLE regress_cms.articles (id int PRIMARY KEY, site_id int, title text, api_token text);
SELECT webhooks.track('regress_cms.articles', 'page', exclude => '{api_token}');
GRANT SELECT, INSERT, UPDATE, DELETE ON regress_cms.articles TO regress_cms_app;
SELECT webhooks.create_webhook('admin hook', 'https://example.com/admin', '{page.*}') > 0 AS created;
SELECT webhooks.enable();
SELECT count(*) AS admin_reads_webhooks FROM webhooks.webhooks WHERE secret LIKE 'whsec_%';
RESET ROLE;

SET ROLE regress_cms_app;
INSERT INTO regress_cms.articles VALUES (1, 1, 'by the app', 'tok-123');
UPDATE regress_cms.articles SET title = 'edited by the app';
DELETE FROM regress_cms.articles;
SELECT pg_temp.try($$SELECT webhooks._capture_wanted('regress_cms.articles')$$);
SELECT pg_temp.try('SELECT secret FROM webhooks.webhooks');
SELECT pg_temp.try('SELECT * FROM webhooks.events');
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://evil.example/', '{*}')$$);
SELECT pg_temp.try($$INSERT INTO webhooks.webhooks (name, url, events) VALUES ('x', 'https://evil.example/', '{*}')$$);
SELECT pg_temp.try('SELECT webhooks.enable()');
SELECT pg_temp.try('SELECT webhooks.disable()');
SELECT pg_temp.try($$SELECT webhooks.emit('session.login', '{}', 1)$$);
SELECT pg_temp.try($$SELECT webhooks.track('regress_cms.articles', 'page')$$);
SELECT pg_temp.try('SELECT * FROM webhooks.active');
RESET ROLE;

-- an admin cannot change how a table it may not alter is tracked
CREATE ROLE regress_other_admin NOLOGIN IN ROLE webhooks_admin;
SELECT 'regress_cms.articles'::regclass::oid AS articles \gset
GRANT USAGE ON SCHEMA regress_cms TO regress_other_admin;
SET ROLE regress_other_admin;
SELECT pg_temp.try($$UPDATE webhooks.tracked_tables SET exclude = '{}' WHERE tbl::oid = $$ || :articles);
SELECT pg_temp.try($$DELETE FROM webhooks.tracked_tables WHERE tbl::oid = $$ || :articles);
SELECT pg_temp.try($$SELECT webhooks.track('regress_cms.articles', 'page')$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA regress_cms FROM regress_other_admin;
DROP ROLE regress_other_admin;
SELECT exclude FROM webhooks.tracked_tables WHERE tbl = 'regress_cms.articles'::regclass;
-- and the owner cannot make it invalid by hand either
SET ROLE regress_hook_admin;
SELECT pg_temp.try($$UPDATE webhooks.tracked_tables SET site_column = 'title' WHERE tbl = 'regress_cms.articles'::regclass$$);
SELECT pg_temp.try($$UPDATE webhooks.tracked_tables SET transitions = '{"title": "x"}' WHERE tbl = 'regress_cms.articles'::regclass$$);
-- dropping or renaming a column the configuration names is refused
SELECT pg_temp.try($$ALTER TABLE regress_cms.articles DROP COLUMN api_token$$);
SELECT pg_temp.try($$ALTER TABLE regress_cms.articles RENAME COLUMN site_id TO site$$);
SELECT pg_temp.try($$ALTER TABLE regress_cms.articles ADD COLUMN summary text$$);
RESET ROLE;

-- the app's changes were queued, as the extension owner, without the token
SELECT type, site_id, payload::text LIKE '%tok-123%' AS token_leaked FROM webhooks.events ORDER BY created_at;

-- emit can be granted to the app explicitly
GRANT USAGE ON SCHEMA webhooks TO regress_cms_app;
GRANT EXECUTE ON FUNCTION webhooks.emit(text, jsonb, bigint, bigint) TO regress_cms_app;
SET ROLE regress_cms_app;
SELECT webhooks.emit('page.published', '{"id": 1}', 1) IS NOT NULL AS app_emitted;
SELECT pg_temp.try('SELECT secret FROM webhooks.webhooks');
RESET ROLE;
REVOKE ALL ON SCHEMA webhooks FROM regress_cms_app;
REVOKE ALL ON FUNCTION webhooks.emit(text, jsonb, bigint, bigint) FROM regress_cms_app;

DROP SCHEMA regress_cms CASCADE;
TRUNCATE webhooks.dispatch_queue, webhooks.event_store;
DELETE FROM webhooks.webhooks;
SELECT webhooks.disable();
DROP ROLE regress_cms_app;
DROP ROLE regress_hook_admin;
