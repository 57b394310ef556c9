/*
 * hmac_sha256.h - the receiver's own small crypto kit.
 *
 * Owns: SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104), base64 with the
 * standard alphabet and padding (RFC 4648 section 4) and a constant-time
 * byte compare. The receiver needs exactly these to verify Standard
 * Webhooks signatures, and keeping them here means the test receiver does
 * not pull in OpenSSL.
 */
#ifndef WEBHOOKS_RECEIVER_HMAC_SHA256_H
#define WEBHOOKS_RECEIVER_HMAC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_BLOCK_LEN 64

/* Streaming state, so a message can be hashed in pieces without copying. */
struct sha256_ctx {
	uint32_t h[8];                          /* intermediate hash value H */
	uint64_t total_len;                     /* bytes absorbed so far */
	unsigned char block[SHA256_BLOCK_LEN];  /* partial block not yet compressed */
	size_t block_len;
};

void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
void sha256_final(struct sha256_ctx *ctx, unsigned char out[SHA256_DIGEST_LEN]);
void sha256(const void *data, size_t len, unsigned char out[SHA256_DIGEST_LEN]);

/*
 * HMAC state is two hash states that have already absorbed the padded key.
 * A caller that signs many messages with one key can set it up once and
 * copy the struct per message (the receiver does this per secret).
 */
struct hmac_sha256_ctx {
	struct sha256_ctx inner;
	struct sha256_ctx outer;
};

void hmac_sha256_init(struct hmac_sha256_ctx *ctx, const void *key, size_t key_len);
void hmac_sha256_update(struct hmac_sha256_ctx *ctx, const void *data, size_t len);
void hmac_sha256_final(struct hmac_sha256_ctx *ctx, unsigned char out[SHA256_DIGEST_LEN]);
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		 unsigned char out[SHA256_DIGEST_LEN]);

/* Length of the padded encoding of n bytes, without the terminating NUL. */
size_t base64_encoded_len(size_t n);

/* Writes the padded encoding plus a NUL to out; returns its length. */
size_t base64_encode(const void *in, size_t n, char *out);

/*
 * Decodes n characters of in into out (at most cap bytes). Padding is
 * optional; anything else outside the alphabet is an error.
 * Returns the decoded length, or -1 on malformed input or overflow.
 */
long base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* 1 if the n bytes are equal; time depends on n only, not on content. */
int ct_equal(const void *a, const void *b, size_t n);

#endif
