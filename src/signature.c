/*
 * signature.c
 *     Standard Webhooks secrets and signatures.
 *
 * A secret is "whsec_" + base64 of random bytes; the key is those bytes.
 * A signature is "v1," + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")).
 * Uses PostgreSQL's own HMAC (common/hmac.h), so no crypto library is
 * linked in addition to what the server already uses.
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "utils/builtins.h"

#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_generate_secret);
PG_FUNCTION_INFO_V1(webhooks_sign);

#define SECRET_PREFIX "whsec_"
#define SECRET_KEY_BYTES 32

Datum
webhooks_generate_secret(PG_FUNCTION_ARGS)
{
	uint8		key[SECRET_KEY_BYTES];
	char		encoded[SECRET_KEY_BYTES * 2];
	int			len;

	if (!pg_strong_random(key, sizeof(key)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a secret")));
	len = pg_b64_encode((const char *) key, sizeof(key), encoded, sizeof(encoded));
	if (len < 0)
		elog(ERROR, "could not encode secret");
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(SECRET_PREFIX "%.*s", len, encoded)));
}

/*
 * The key bytes of a secret, with or without the whsec_ prefix: returns
 * the length, or -1 if the rest is not base64.
 */
int
webhooks_secret_key_or_fail(const char *secret, uint8 **key)
{
	int			len;

	if (strncmp(secret, SECRET_PREFIX, strlen(SECRET_PREFIX)) == 0)
		secret += strlen(SECRET_PREFIX);
	*key = palloc(pg_b64_dec_len(strlen(secret)) + 1);
	len = pg_b64_decode(secret, strlen(secret), (char *) *key,
						pg_b64_dec_len(strlen(secret)) + 1);
	return len > 0 ? len : -1;
}

/* The same, but an error for anything that is not base64. */
int
webhooks_secret_key(const char *secret, uint8 **key)
{
	int			len = webhooks_secret_key_or_fail(secret, key);

	if (len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret is not valid base64"),
				 errhint("A secret looks like whsec_ followed by base64, as webhooks.generate_secret() returns.")));
	return len;
}

/* "v1,<base64 signature>" for the message "<id>.<timestamp>.<body>". */
char *
webhooks_signature(const uint8 *key, int keylen, const char *id, int64 timestamp,
				   const char *body, size_t bodylen)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	char		prefix[64];
	char		encoded[PG_SHA256_DIGEST_LENGTH * 2];
	int			len;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	snprintf(prefix, sizeof(prefix), "." INT64_FORMAT ".", timestamp);
	if (pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) id, strlen(id)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) prefix, strlen(prefix)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, bodylen) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256");
	}
	pg_hmac_free(ctx);
	len = pg_b64_encode((const char *) mac, sizeof(mac), encoded, sizeof(encoded));
	if (len < 0)
		elog(ERROR, "could not encode signature");
	return psprintf("v1,%.*s", len, encoded);
}

/* webhooks.sign(secret, id, timestamp, body) → "v1,..." */
Datum
webhooks_sign(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		timestamp = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	uint8	   *key;
	int			keylen = webhooks_secret_key(secret, &key);

	PG_RETURN_TEXT_P(cstring_to_text(webhooks_signature(key, keylen, id, timestamp,
														VARDATA_ANY(body),
														VARSIZE_ANY_EXHDR(body))));
}
