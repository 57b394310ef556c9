-- Standard Webhooks signatures: the reference test vector.
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                     1614265330, '{"test": 2432232314}')
     = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS reference_vector;
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                     1614265330, '{"test": 2432232314}');
-- the prefix is optional, as in the reference libraries
SELECT webhooks.sign('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                     1614265330, '{"test": 2432232314}');
-- any change to id, timestamp or body changes the signature
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
                     1614265331, '{"test": 2432232314}')
    <> 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS timestamp_matters;
SELECT webhooks.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJeK',
                     1614265330, '{"test": 2432232314}')
    <> 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS id_matters;
-- a secret that is not base64
\set VERBOSITY default
SELECT webhooks.sign('whsec_***', 'msg', 1, 'body');
-- NULL in, NULL out (STRICT)
SELECT webhooks.sign(NULL, 'msg', 1, 'body') IS NULL AS strict;

-- generated secrets: whsec_ + base64 of 32 random bytes, all different
SELECT count(DISTINCT s) AS distinct_secrets,
       bool_and(s ~ '^whsec_[A-Za-z0-9+/]{43}=$') AS format,
       bool_and(length(decode(substr(s, 7), 'base64')) = 32) AS key_bytes
FROM (SELECT webhooks.generate_secret() AS s FROM generate_series(1, 100)) g;

-- the payload envelope used for test notifications: NULL parts are refused
SELECT webhooks._build_payload('01a242f5-6934-7fca-b492-612ecbac8329', 'page.created', 1, NULL, '{"id": 1}', true)
    ~ '^\{"id":"01a242f5-6934-7fca-b492-612ecbac8329","type":"page.created","timestamp":"[0-9T:.-]+Z","site_id":1,"space_id":null,"data":\{"id": 1\},"test":true\}$' AS envelope;
SELECT webhooks._build_payload(NULL, 'page.created', 1, NULL, '{}', true);
SELECT webhooks._build_payload('01a242f5-6934-7fca-b492-612ecbac8329', 'page.created', 1, NULL, NULL, true);
