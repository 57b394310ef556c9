-- Webhook management: create, validate, rotate, delete; one set of rules
-- whether through the functions or plain SQL on webhooks.webhooks.
-- webhook ids in the output start at 1 whatever ran before
SELECT setval('webhooks.webhooks_id_seq', 1, false) IS NOT NULL AS ids_reset;
\set VERBOSITY default
SET client_min_messages = notice;

\i sql/include/try.sql

-- While the switch is off, creating works and a NOTICE says how to turn it on.
SELECT webhooks.create_webhook('Publish hook', 'https://hooks.example.com/cms', '{page.published}') AS id \gset
SELECT name, url, events, sites, spaces, headers, enabled,
       secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_generated
FROM webhooks.webhooks WHERE id = :id;

SELECT webhooks.enable();
SELECT webhooks.create_webhook('Everything', 'http://127.0.0.1:8787/hooks', '{*}',
                               sites => '{1,2}', spaces => '{7}',
                               headers => '{"Authorization": "Bearer abc", "X-Env": "test"}',
                               secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') AS id2 \gset
SELECT name, events, sites, spaces, headers, secret FROM webhooks.webhooks WHERE id = :id2;
SELECT webhooks.create_webhook('Pages and entries', 'https://example.com/x', '{page.*,entry.*}', enabled => false) AS id3 \gset

-- the active list: enabled webhooks, while the switch is on
SELECT id = :id AS first, name, url, events FROM webhooks.active ORDER BY id;
SELECT webhooks.disable();
SELECT count(*) AS active_while_off FROM webhooks.active;
SELECT webhooks.enable();

SELECT count(*) AS before_bad_input FROM webhooks.webhooks \gset

-- URL
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'ftp://example.com/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'example.com/hook', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/a b', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', E'https://example.com/\n', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://user:pw@example.com/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://token@example.com/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/' || repeat('a', 2100), '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https:///path', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com:http/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com:99999/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com:0/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://[::1/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://exa\mple.com/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/' || chr(160), '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/#frag', '{*}')$$);
-- valid edge cases
SELECT pg_temp.try($$SELECT webhooks.create_webhook('ipv6', 'http://[::1]:8080/hook', '{*}', enabled => false)$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('at in path', 'https://example.com/a@b?c=d@e', '{*}', enabled => false)$$);
DELETE FROM webhooks.webhooks WHERE name IN ('ipv6', 'at in path');
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', NULL, '{*}')$$);
-- name
SELECT pg_temp.try($$SELECT webhooks.create_webhook(NULL, 'https://example.com/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('  ', 'https://example.com/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook(repeat('n', 201), 'https://example.com/', '{*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook(E'two\nlines', 'https://example.com/', '{*}')$$);
-- events
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', NULL)$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{page.eaten}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{page}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{pages.*}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{page.created,NULL}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{""}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{{page.created},{page.deleted}}')$$);
-- sites and spaces
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', sites => '{}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', sites => '{1,NULL}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', spaces => '{{1},{2}}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', sites => 5)$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', sites => '5')$$);
-- headers
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '["a"]')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": 1}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X A": "1"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": "a\r\nX-Evil: 1"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A\n": "1"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"content-type": "text/plain"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"User-Agent": "me"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"Webhook-Signature": "v1,x"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"Host": "evil"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": "1", "x-a": "2"}')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => jsonb_build_object('X-Big', repeat('a', 9000)))$$);
-- secret
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'hunter2')$$);
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'whsec_c2hvcnQ=')$$);
-- enabled
SELECT pg_temp.try($$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', enabled => NULL)$$);

-- none of that left anything behind
SELECT count(*) = :before_bad_input AS nothing_half_done FROM webhooks.webhooks;

-- plain SQL goes through the same rules
SELECT pg_temp.try($$INSERT INTO webhooks.webhooks (name, url, events) VALUES ('x', 'gopher://x', '{*}')$$);
SELECT pg_temp.try($$UPDATE webhooks.webhooks SET events = '{nope.created}'$$);
SELECT pg_temp.try($$UPDATE webhooks.webhooks SET headers = '{"Content-Type": "x"}' WHERE id = $$ || :id);
SELECT pg_temp.try($$UPDATE webhooks.webhooks SET id = id + 100 WHERE id = $$ || :id);
SELECT count(*) = :before_bad_input AS nothing_half_done FROM webhooks.webhooks;
INSERT INTO webhooks.webhooks (name, url, events) VALUES ('psql', 'https://example.com/psql', '{entry.*}')
RETURNING name, events, headers, enabled, secret ~ '^whsec_' AS secret_generated;
UPDATE webhooks.webhooks SET url = 'https://example.com/psql2', headers = NULL WHERE name = 'psql'
RETURNING url, headers, updated_at >= created_at AS touched;

-- disabling records when and why; enabling clears it
UPDATE webhooks.webhooks SET enabled = false WHERE id = :id
RETURNING enabled, disabled_reason, disabled_at IS NOT NULL AS disabled_at_set;
UPDATE webhooks.webhooks SET enabled = true WHERE id = :id
RETURNING enabled, disabled_reason, disabled_at;

-- rotation: a new secret, the old one kept for the overlap window
SELECT secret AS old_secret FROM webhooks.webhooks WHERE id = :id2 \gset
SELECT webhooks.rotate_secret(:id2) AS new_secret \gset
SELECT secret = :'new_secret' AS rotated, previous_secret = :'old_secret' AS previous_kept,
       secret_rotated_at IS NOT NULL AS rotated_at_set, secret <> :'old_secret' AS changed
FROM webhooks.webhooks WHERE id = :id2;
SELECT pg_temp.try($$SELECT webhooks.rotate_secret(424242)$$);

-- delete
SELECT webhooks.delete_webhook(:id3);
SELECT count(*) AS left_after_delete FROM webhooks.webhooks WHERE id = :id3;
SELECT pg_temp.try($$SELECT webhooks.delete_webhook(424242)$$);

-- clean up for the next tests
DELETE FROM webhooks.webhooks;
SELECT webhooks.disable();
