-- pgTAP: webhook management: create, validate (functions and plain SQL
-- alike), rotate, enable/disable, delete.
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

-- ------------------------------------------------------------- create ---
-- (the switch is off: creating works, a NOTICE says so; pg_regress checks its text)
SELECT webhooks.create_webhook('Publish hook', 'https://hooks.example.com/cms', '{page.published}') AS id1 \gset
SELECT isnt(:'id1'::bigint, NULL, 'create_webhook returns an id');
SELECT results_eq(
    format($$SELECT name, url, events, sites, spaces, headers, enabled, previous_secret, disabled_reason
             FROM webhooks.webhooks WHERE id = %s$$, :id1),
    $$VALUES ('Publish hook'::text, 'https://hooks.example.com/cms'::text, '{page.published}'::text[],
              NULL::bigint[], NULL::bigint[], '{}'::jsonb, true, NULL::text, NULL::text)$$,
    'the webhook is stored with the defaults: all sites, all spaces, no headers, enabled');
SELECT matches((SELECT secret FROM webhooks.webhooks WHERE id = :id1), '^whsec_[A-Za-z0-9+/]{43}=$',
               'a NULL secret is generated: whsec_ + base64');
SELECT is((SELECT length(decode(substr(secret, 7), 'base64')) FROM webhooks.webhooks WHERE id = :id1), 32,
          'the generated key has 32 bytes');
SELECT ok((SELECT created_at IS NOT NULL AND updated_at IS NOT NULL FROM webhooks.webhooks WHERE id = :id1),
          'created_at and updated_at are filled in');

SELECT webhooks.create_webhook('Everything', 'http://127.0.0.1:8787/hooks', '{*}',
                               sites => '{1,2}', spaces => '{7}',
                               headers => '{"Authorization": "Bearer abc", "X-Env": "test"}',
                               secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') AS id2 \gset
SELECT results_eq(
    format($$SELECT name, url, events, sites, spaces, headers, secret, enabled FROM webhooks.webhooks WHERE id = %s$$, :id2),
    $$VALUES ('Everything'::text, 'http://127.0.0.1:8787/hooks'::text, '{*}'::text[], '{1,2}'::bigint[], '{7}'::bigint[],
              '{"Authorization": "Bearer abc", "X-Env": "test"}'::jsonb,
              'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'::text, true)$$,
    'every argument of create_webhook is stored as given');
SELECT cmp_ok(:id2::bigint, '>', :id1::bigint, 'ids grow');

SELECT webhooks.create_webhook('Pages and entries', 'https://example.com/x', '{page.*,entry.*}', enabled => false) AS id3 \gset
SELECT is((SELECT enabled FROM webhooks.webhooks WHERE id = :id3), false, 'a webhook can be created disabled');
SELECT isnt((SELECT secret FROM webhooks.webhooks WHERE id = :id1), (SELECT secret FROM webhooks.webhooks WHERE id = :id3),
            'each webhook gets its own generated secret');

-- the active list: enabled webhooks, and only while the switch is on
SELECT is((SELECT count(*)::int FROM webhooks.active), 0, 'webhooks.active is empty while the switch is off');
SELECT webhooks.enable();
SELECT results_eq('SELECT id FROM webhooks.active',
                  format('VALUES (%s::bigint), (%s::bigint)', :id1, :id2),
                  'webhooks.active lists the enabled webhooks once the switch is on');

-- accepted inputs at and near the edges
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'HTTPS://Example.COM/Hook', '{*}')$q$, 'scheme and host are case-insensitive');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'http://[::1]:8080/x', '{*}')$q$, 'IPv6 host with a port');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'https://example.com:8443/x?a=b&c=@d', '{*}')$q$, 'port, query, @ in the query');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'https://example.com/a@b', '{*}')$q$, '@ in the path is not a user name');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'https://example.com/' || repeat('a', 2028), '{*}')$q$, 'a URL of exactly 2048 characters');
SELECT lives_ok($q$SELECT webhooks.create_webhook(repeat('n', 200), 'https://example.com/', '{*}')$q$, 'a name of exactly 200 characters');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'https://example.com/', '{page.created,entry.*,*}')$q$, 'exact names, resource.* and * together');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'https://example.com/', '{*}', headers => '{"X-Tab": "a\tb", "Authorization": "Basic eDp5"}')$q$, 'a tab in a header value is allowed');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'https://example.com/', '{*}', secret => 'whsec_' || encode(repeat('k', 24)::bytea, 'base64'))$q$, 'a 24-byte secret key');
SELECT lives_ok($q$SELECT webhooks.create_webhook('ok', 'https://example.com/', '{*}', secret => 'whsec_' || replace(encode(repeat('k', 64)::bytea, 'base64'), E'\n', ''))$q$, 'a 64-byte secret key');

-- ------------------------------------------------------- bad input ---
SELECT count(*) AS before_bad FROM webhooks.webhooks \gset
SELECT max(id) AS max_before_bad FROM webhooks.webhooks \gset

-- URL
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'ftp://example.com/', '{*}')$q$,
                 '22023', 'webhook URL "ftp://example.com/" must use http or https', 'URL: ftp is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'example.com/hook', '{*}')$q$,
                 '22023', 'webhook URL "example.com/hook" must use http or https', 'URL: no scheme is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'javascript://example.com/%0aalert(1)', '{*}')$q$,
                 '22023', 'webhook URL "javascript://example.com/%0aalert(1)" must use http or https', 'URL: other schemes are refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/' || repeat('a', 2029), '{*}')$q$,
                 '22023', 'webhook URL is too long (2049 characters)', 'URL: 2049 characters is too long');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/' || repeat('a', 2100), '{*}')$q$,
                 '22023', 'webhook URL is too long (2120 characters)', 'URL: 2120 characters is too long');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/a b', '{*}')$q$,
                 '22023', 'webhook URL must not contain spaces, control or non-ASCII characters', 'URL: a space is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', ' https://example.com/', '{*}')$q$,
                 '22023', 'webhook URL must not contain spaces, control or non-ASCII characters', 'URL: a leading space is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', E'https://example.com/\r\nHost: evil', '{*}')$q$,
                 '22023', 'webhook URL must not contain spaces, control or non-ASCII characters', 'URL: CR/LF is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', E'https://example.com/\t', '{*}')$q$,
                 '22023', 'webhook URL must not contain spaces, control or non-ASCII characters', 'URL: a tab is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://user:pw@example.com/', '{*}')$q$,
                 '22023', 'webhook URL must not contain a user name or password', 'URL: user:password is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://token@example.com/', '{*}')$q$,
                 '22023', 'webhook URL must not contain a user name or password', 'URL: a user name alone is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'HTTP://u:p@EXAMPLE.com', '{*}')$q$,
                 '22023', 'webhook URL must not contain a user name or password', 'URL: user:password with an upper-case scheme is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https:///path', '{*}')$q$,
                 '22023', 'webhook URL "https:///path" has no host', 'URL: no host is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://:443/path', '{*}')$q$,
                 '22023', 'webhook URL "https://:443/path" has no host', 'URL: a port without a host is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com:http/', '{*}')$q$,
                 '22023', 'webhook URL "https://example.com:http/" has an invalid port', 'URL: a non-numeric port is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/#frag', '{*}')$q$,
                 '22023', 'webhook URL must not contain a fragment (#)', 'URL: a fragment is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', NULL, '{*}')$q$,
                 '23502', 'webhook url must not be null', 'URL: NULL is refused');
-- name
SELECT throws_ok($q$SELECT webhooks.create_webhook(NULL, 'https://example.com/', '{*}')$q$,
                 '23502', 'webhook name must not be null', 'name: NULL is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('  ', 'https://example.com/', '{*}')$q$,
                 '22023', 'webhook name must have 1 to 200 characters', 'name: blank is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook(repeat('n', 201), 'https://example.com/', '{*}')$q$,
                 '22023', 'webhook name must have 1 to 200 characters', 'name: 201 characters is too long');
-- events
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{}')$q$,
                 '22023', 'a webhook needs at least one event', 'events: empty array is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', NULL)$q$,
                 '23502', 'webhook events must not be null', 'events: NULL is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{page.eaten}')$q$,
                 '22023', 'unknown event type "page.eaten"', 'events: unknown action is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{page.published,navigation.created}')$q$,
                 '22023', 'unknown event type "navigation.created"', 'events: one unknown among known ones is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{page}')$q$,
                 '22023', 'unknown event type "page"', 'events: a bare resource is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{pages.*}')$q$,
                 '22023', 'unknown event resource "pages.*"', 'events: unknown resource.* is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{Page.Created}')$q$,
                 '22023', 'unknown event type "Page.Created"', 'events: names are case-sensitive');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{page.created,NULL}')$q$,
                 '22023', 'events must not contain NULL or empty entries', 'events: a NULL element is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{""}')$q$,
                 '22023', 'events must not contain NULL or empty entries', 'events: an empty string is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{{page.created},{page.deleted}}')$q$,
                 '22023', 'events must be a one-dimensional array', 'events: a 2-D array is refused');
-- sites and spaces
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', sites => '{}')$q$,
                 '22023', 'sites must not be an empty array', 'sites: empty array is refused (NULL means all)');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', spaces => '{}')$q$,
                 '22023', 'spaces must not be an empty array', 'spaces: empty array is refused (NULL means all)');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', sites => '{1,NULL}')$q$,
                 '22023', 'sites must not contain NULL', 'sites: a NULL element is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', spaces => '{NULL}')$q$,
                 '22023', 'spaces must not contain NULL', 'spaces: a NULL element is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', spaces => '{{1},{2}}')$q$,
                 '22023', 'spaces must be a one-dimensional array', 'spaces: a 2-D array is refused');
-- headers
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '["a"]')$q$,
                 '22023', 'headers must be a JSON object', 'headers: an array is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '"X-A: 1"')$q$,
                 '22023', 'headers must be a JSON object', 'headers: a string is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => 'null')$q$,
                 '22023', 'headers must be a JSON object', 'headers: JSON null is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": 1}')$q$,
                 '22023', 'value of header "X-A" must be a string', 'headers: a number value is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": {"b": "c"}}')$q$,
                 '22023', 'value of header "X-A" must be a string', 'headers: an object value is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X A": "1"}')$q$,
                 '22023', 'invalid header name "X A"', 'headers: a space in a name is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"": "1"}')$q$,
                 '22023', 'invalid header name ""', 'headers: an empty name is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A\n": "1"}')$q$,
                 '22023', E'invalid header name "X-A\n"', 'headers: LF in a name is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A\r\nX-Evil": "1"}')$q$,
                 '22023', E'invalid header name "X-A\r\nX-Evil"', 'headers: CR/LF in a name is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": "a\r\nX-Evil: 1"}')$q$,
                 '22023', 'value of header "X-A" must not contain line breaks or control characters', 'headers: CR/LF in a value is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": "a\nb"}')$q$,
                 '22023', 'value of header "X-A" must not contain line breaks or control characters', 'headers: LF in a value is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": "a\rb"}')$q$,
                 '22023', 'value of header "X-A" must not contain line breaks or control characters', 'headers: CR in a value is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"X-A": "a\u0007b"}')$q$,
                 '22023', 'value of header "X-A" must not contain line breaks or control characters', 'headers: a control character in a value is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"Content-Type": "text/plain"}')$q$,
                 '22023', 'header "Content-Type" is set by pg-webhooks and cannot be overridden', 'headers: Content-Type cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"content-type": "text/plain"}')$q$,
                 '22023', 'header "content-type" is set by pg-webhooks and cannot be overridden', 'headers: content-type (lower case) cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"User-Agent": "me"}')$q$,
                 '22023', 'header "User-Agent" is set by pg-webhooks and cannot be overridden', 'headers: User-Agent cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"webhook-id": "msg_1"}')$q$,
                 '22023', 'header "webhook-id" is set by pg-webhooks and cannot be overridden', 'headers: webhook-id cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"Webhook-Signature": "v1,x"}')$q$,
                 '22023', 'header "Webhook-Signature" is set by pg-webhooks and cannot be overridden', 'headers: Webhook-Signature cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"WEBHOOK-TIMESTAMP": "1"}')$q$,
                 '22023', 'header "WEBHOOK-TIMESTAMP" is set by pg-webhooks and cannot be overridden', 'headers: webhook-timestamp cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"Host": "evil"}')$q$,
                 '22023', 'header "Host" is set by pg-webhooks and cannot be overridden', 'headers: Host cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => '{"Content-Length": "0"}')$q$,
                 '22023', 'header "Content-Length" is set by pg-webhooks and cannot be overridden', 'headers: Content-Length cannot be overridden');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', headers => jsonb_build_object('X-Big', repeat('a', 9000)))$q$,
                 '22023', 'custom headers are too large', 'headers: more than 8 kB is refused');
-- secret
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'hunter2')$q$,
                 '22023', 'secret must be "whsec_" followed by base64', 'secret: not whsec_ is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')$q$,
                 '22023', 'secret must be "whsec_" followed by base64', 'secret: base64 without the whsec_ prefix is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'whsec_abc')$q$,
                 '22023', 'secret must be "whsec_" followed by base64', 'secret: truncated base64 is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaSw')$q$,
                 '22023', 'secret must be "whsec_" followed by base64', 'secret: a space is refused');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'whsec_c2hvcnQ=')$q$,
                 '22023', 'secret key must be 24 to 64 bytes, not 5', 'secret: a 5-byte key is too short');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'whsec_' || encode(repeat('k', 23)::bytea, 'base64'))$q$,
                 '22023', 'secret key must be 24 to 64 bytes, not 23', 'secret: a 23-byte key is too short');
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', secret => 'whsec_' || replace(encode(repeat('k', 65)::bytea, 'base64'), E'\n', ''))$q$,
                 '22023', 'secret key must be 24 to 64 bytes, not 65', 'secret: a 65-byte key is too long');
-- enabled
SELECT throws_ok($q$SELECT webhooks.create_webhook('x', 'https://example.com/', '{*}', enabled => NULL)$q$,
                 '23502', 'webhook enabled must not be null', 'enabled: NULL is refused');

SELECT is((SELECT count(*) FROM webhooks.webhooks), :before_bad::bigint, 'no bad create_webhook call left a row behind');

-- ------------------------------------------ plain INSERT and UPDATE ---
SELECT throws_ok($q$INSERT INTO webhooks.webhooks (name, url, events) VALUES ('x', 'gopher://x', '{*}')$q$,
                 '22023', 'webhook URL "gopher://x" must use http or https', 'INSERT: the URL is validated');
SELECT throws_ok($q$INSERT INTO webhooks.webhooks (name, url, events) VALUES (NULL, 'https://example.com/', '{*}')$q$,
                 '23502', 'webhook name must not be null', 'INSERT: a NULL name is refused');
SELECT throws_ok($q$INSERT INTO webhooks.webhooks (name, url, events) VALUES ('x', 'https://example.com/', '{page.eaten}')$q$,
                 '22023', 'unknown event type "page.eaten"', 'INSERT: the events are validated');
SELECT throws_ok($q$INSERT INTO webhooks.webhooks (name, url, events, sites) VALUES ('x', 'https://example.com/', '{*}', '{}')$q$,
                 '22023', 'sites must not be an empty array', 'INSERT: the sites are validated');
SELECT throws_ok($q$INSERT INTO webhooks.webhooks (name, url, events, headers) VALUES ('x', 'https://example.com/', '{*}', '{"X-A": "a\r\nb"}')$q$,
                 '22023', 'value of header "X-A" must not contain line breaks or control characters', 'INSERT: the headers are validated');
SELECT throws_ok($q$INSERT INTO webhooks.webhooks (name, url, events, secret) VALUES ('x', 'https://example.com/', '{*}', 'hunter2')$q$,
                 '22023', 'secret must be "whsec_" followed by base64', 'INSERT: the secret is validated');
SELECT throws_ok($q$INSERT INTO webhooks.webhooks (name, url, events, enabled) VALUES ('x', 'https://example.com/', '{*}', NULL)$q$,
                 '23502', 'webhook enabled must not be null', 'INSERT: a NULL enabled is refused');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET url = 'https://u:p@example.com/' WHERE id = %s$q$, :id1),
                 '22023', 'webhook URL must not contain a user name or password', 'UPDATE: the URL is validated');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET url = NULL WHERE id = %s$q$, :id1),
                 '23502', 'webhook url must not be null', 'UPDATE: a NULL url is refused');
SELECT throws_ok($q$UPDATE webhooks.webhooks SET events = '{nope.created}'$q$,
                 '22023', 'unknown event type "nope.created"', 'UPDATE: the events are validated');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET spaces = '{1,NULL}' WHERE id = %s$q$, :id1),
                 '22023', 'spaces must not contain NULL', 'UPDATE: the spaces are validated');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET headers = '{"Content-Type": "x"}' WHERE id = %s$q$, :id1),
                 '22023', 'header "Content-Type" is set by pg-webhooks and cannot be overridden', 'UPDATE: the headers are validated');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET headers = '[]' WHERE id = %s$q$, :id1),
                 '22023', 'headers must be a JSON object', 'UPDATE: non-object headers are refused');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET secret = 'whsec_c2hvcnQ=' WHERE id = %s$q$, :id1),
                 '22023', 'secret key must be 24 to 64 bytes, not 5', 'UPDATE: the secret is validated');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET enabled = NULL WHERE id = %s$q$, :id1),
                 '23502', 'webhook enabled must not be null', 'UPDATE: a NULL enabled is refused');
SELECT throws_ok(format($q$UPDATE webhooks.webhooks SET id = id + 100 WHERE id = %s$q$, :id1),
                 '22023', 'the id of a webhook cannot be changed', 'UPDATE: the id cannot change');
SELECT is((SELECT count(*) FROM webhooks.webhooks), :before_bad::bigint, 'no bad INSERT left a row behind');
SELECT results_eq(
    format($$SELECT url, events, spaces, headers, enabled, previous_secret FROM webhooks.webhooks WHERE id = %s$$, :id1),
    $$VALUES ('https://hooks.example.com/cms'::text, '{page.published}'::text[], NULL::bigint[], '{}'::jsonb, true, NULL::text)$$,
    'no bad UPDATE changed the webhook');
SELECT is((SELECT count(*)::int FROM webhooks.webhooks WHERE id > :max_before_bad), 0, 'no webhook was added by the bad input');

-- plain SQL that is valid works and gets the same defaults
INSERT INTO webhooks.webhooks (name, url, events) VALUES ('psql', 'https://example.com/psql', '{entry.*}');
SELECT ok((SELECT secret ~ '^whsec_[A-Za-z0-9+/]{43}=$' AND headers = '{}' AND enabled
           FROM webhooks.webhooks WHERE name = 'psql'),
          'a plain INSERT gets a generated secret, no headers and enabled');
UPDATE webhooks.webhooks SET url = 'https://example.com/psql2', headers = NULL WHERE name = 'psql';
SELECT results_eq($$SELECT url, headers FROM webhooks.webhooks WHERE name = 'psql'$$,
                  $$VALUES ('https://example.com/psql2'::text, '{}'::jsonb)$$,
                  'a plain UPDATE is stored, NULL headers become {}');
UPDATE webhooks.webhooks SET created_at = '2000-01-01' WHERE name = 'psql';
SELECT isnt((SELECT created_at FROM webhooks.webhooks WHERE name = 'psql'), '2000-01-01'::timestamptz,
            'created_at cannot be rewritten');

-- ------------------------------------------------- disable / enable ---
UPDATE webhooks.webhooks SET enabled = false WHERE id = :id1;
SELECT results_eq(format($$SELECT enabled, disabled_reason, disabled_at IS NOT NULL FROM webhooks.webhooks WHERE id = %s$$, :id1),
                  $$VALUES (false, ('disabled by ' || current_user) COLLATE "default", true)$$,
                  'disabling records when and by whom');
SELECT is((SELECT count(*)::int FROM webhooks.active WHERE id = :id1), 0, 'a disabled webhook is not active');
UPDATE webhooks.webhooks SET enabled = true WHERE id = :id1;
SELECT results_eq(format($$SELECT enabled, disabled_reason, disabled_at FROM webhooks.webhooks WHERE id = %s$$, :id1),
                  $$VALUES (true, NULL::text, NULL::timestamptz)$$,
                  'enabling clears the reason and time');
UPDATE webhooks.webhooks SET enabled = false, disabled_reason = 'receiver gone' WHERE id = :id1;
SELECT is((SELECT disabled_reason FROM webhooks.webhooks WHERE id = :id1), 'receiver gone', 'a given disabled_reason is kept');
UPDATE webhooks.webhooks SET enabled = true WHERE id = :id1;

-- ----------------------------------------------------------- rotation ---
SELECT secret AS old_secret FROM webhooks.webhooks WHERE id = :id2 \gset
SELECT webhooks.rotate_secret(:id2) AS new_secret \gset
SELECT matches(:'new_secret'::text, '^whsec_[A-Za-z0-9+/]{43}=$', 'rotate_secret returns a new generated secret');
SELECT isnt(:'new_secret'::text, :'old_secret'::text, 'the new secret differs from the old one');
SELECT is((SELECT secret FROM webhooks.webhooks WHERE id = :id2), :'new_secret', 'the returned secret is the stored one');
SELECT is((SELECT previous_secret FROM webhooks.webhooks WHERE id = :id2), :'old_secret', 'the old secret is kept as previous_secret');
SELECT isnt((SELECT secret_rotated_at FROM webhooks.webhooks WHERE id = :id2), NULL, 'secret_rotated_at is set');
SELECT webhooks.rotate_secret(:id2) AS newer_secret \gset
SELECT results_eq(format($$SELECT secret, previous_secret FROM webhooks.webhooks WHERE id = %s$$, :id2),
                  format($$VALUES (%L::text, %L::text)$$, :'newer_secret', :'new_secret'),
                  'a second rotation keeps only the secret before it');
UPDATE webhooks.webhooks SET url = 'https://example.com/moved' WHERE id = :id2;
SELECT is((SELECT previous_secret FROM webhooks.webhooks WHERE id = :id2), :'new_secret',
          'an UPDATE that does not touch the secret does not rotate it');
UPDATE webhooks.webhooks SET secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' WHERE id = :id2;
SELECT results_eq(format($$SELECT secret, previous_secret FROM webhooks.webhooks WHERE id = %s$$, :id2),
                  format($$VALUES ('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'::text, %L::text)$$, :'newer_secret'),
                  'setting a secret with UPDATE keeps the old one as previous_secret');
SELECT throws_ok('SELECT webhooks.rotate_secret(424242)', 'P0002', 'webhook 424242 does not exist',
                 'rotate_secret of an unknown id');

-- ------------------------------------------------------------- delete ---
SELECT count(*) AS before_delete FROM webhooks.webhooks \gset
SELECT lives_ok(format('SELECT webhooks.delete_webhook(%s)', :id3), 'delete_webhook works');
SELECT is((SELECT count(*)::int FROM webhooks.webhooks WHERE id = :id3), 0, 'the webhook is gone');
SELECT is((SELECT count(*) FROM webhooks.webhooks), :before_delete::bigint - 1, 'only that webhook is gone');
SELECT throws_ok(format('SELECT webhooks.delete_webhook(%s)', :id3), 'P0002', format('webhook %s does not exist', :id3),
                 'deleting it again');
SELECT throws_ok('SELECT webhooks.delete_webhook(424242)', 'P0002', 'webhook 424242 does not exist',
                 'delete_webhook of an unknown id');
SELECT throws_ok('SELECT webhooks.delete_webhook(NULL)', 'P0002', NULL, 'delete_webhook(NULL)');

SELECT * FROM finish();
ROLLBACK;
