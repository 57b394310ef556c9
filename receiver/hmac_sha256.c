/*
 * hmac_sha256.c - SHA-256, HMAC-SHA256, base64 and constant-time compare.
 *
 * Owns the implementations declared in hmac_sha256.h, written from the
 * definitions in FIPS 180-4 (SHA-256), RFC 2104 (HMAC) and RFC 4648
 * (base64). Clarity wins over speed here: the receiver hashes one small
 * body per request, which costs microseconds either way.
 */
#include "hmac_sha256.h"

#include <string.h>

/* FIPS 180-4 4.2.2: first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* FIPS 180-4 5.3.3: first 32 bits of the fractional parts of the square
 * roots of the first 8 primes. */
static const uint32_t H0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static uint32_t rotr(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

/* The six logical functions of FIPS 180-4 4.1.2. */
static uint32_t ch(uint32_t x, uint32_t y, uint32_t z)
{
	return (x & y) ^ (~x & z);
}

static uint32_t maj(uint32_t x, uint32_t y, uint32_t z)
{
	return (x & y) ^ (x & z) ^ (y & z);
}

static uint32_t big_sigma0(uint32_t x)
{
	return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22);
}

static uint32_t big_sigma1(uint32_t x)
{
	return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25);
}

static uint32_t small_sigma0(uint32_t x)
{
	return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3);
}

static uint32_t small_sigma1(uint32_t x)
{
	return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10);
}

/* SHA-256 is defined on big-endian words regardless of the host order. */
static uint32_t load_be32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* FIPS 180-4 6.2.1 step 1: the message schedule W0..W63 of one block. */
static void expand_schedule(uint32_t w[64], const unsigned char block[SHA256_BLOCK_LEN])
{
	for (int t = 0; t < 16; t++)
		w[t] = load_be32(block + 4 * t);
	for (int t = 16; t < 64; t++)
		w[t] = small_sigma1(w[t - 2]) + w[t - 7] + small_sigma0(w[t - 15]) + w[t - 16];
}

/* FIPS 180-4 6.2.2 steps 2-4: fold one 512-bit block into H. */
static void compress(uint32_t h[8], const unsigned char block[SHA256_BLOCK_LEN])
{
	uint32_t w[64];
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
	uint32_t e = h[4], f = h[5], g = h[6], hh = h[7];

	expand_schedule(w, block);
	for (int t = 0; t < 64; t++) {
		uint32_t t1 = hh + big_sigma1(e) + ch(e, f, g) + K[t] + w[t];
		uint32_t t2 = big_sigma0(a) + maj(a, b, c);

		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
	h[5] += f;
	h[6] += g;
	h[7] += hh;
}

void sha256_init(struct sha256_ctx *ctx)
{
	memcpy(ctx->h, H0, sizeof(H0));
	ctx->total_len = 0;
	ctx->block_len = 0;
}

void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len)
{
	const unsigned char *p = data;

	ctx->total_len += len;
	/* Top up a partial block left by an earlier call first. */
	if (ctx->block_len > 0) {
		size_t take = SHA256_BLOCK_LEN - ctx->block_len;

		if (take > len)
			take = len;
		memcpy(ctx->block + ctx->block_len, p, take);
		ctx->block_len += take;
		p += take;
		len -= take;
		if (ctx->block_len < SHA256_BLOCK_LEN)
			return;
		compress(ctx->h, ctx->block);
		ctx->block_len = 0;
	}
	/* Whole blocks straight from the input, saving a copy. */
	while (len >= SHA256_BLOCK_LEN) {
		compress(ctx->h, p);
		p += SHA256_BLOCK_LEN;
		len -= SHA256_BLOCK_LEN;
	}
	memcpy(ctx->block, p, len);
	ctx->block_len = len;
}

/*
 * FIPS 180-4 5.1.1 padding: a 1 bit, zeros up to 56 mod 64 bytes, then the
 * message length in bits as a 64-bit big-endian number.
 */
void sha256_final(struct sha256_ctx *ctx, unsigned char out[SHA256_DIGEST_LEN])
{
	uint64_t bit_len = ctx->total_len * 8;

	ctx->block[ctx->block_len++] = 0x80;
	if (ctx->block_len > 56) {
		/* No room left for the length: pad out this block and use a new one. */
		memset(ctx->block + ctx->block_len, 0, SHA256_BLOCK_LEN - ctx->block_len);
		compress(ctx->h, ctx->block);
		ctx->block_len = 0;
	}
	memset(ctx->block + ctx->block_len, 0, 56 - ctx->block_len);
	store_be32(ctx->block + 56, (uint32_t)(bit_len >> 32));
	store_be32(ctx->block + 60, (uint32_t)bit_len);
	compress(ctx->h, ctx->block);
	for (int i = 0; i < 8; i++)
		store_be32(out + 4 * i, ctx->h[i]);
	/* The state may be derived from a secret key; do not leave it lying around. */
	memset(ctx, 0, sizeof(*ctx));
}

void sha256(const void *data, size_t len, unsigned char out[SHA256_DIGEST_LEN])
{
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, data, len);
	sha256_final(&ctx, out);
}

/* Starts a hash over (key XOR pad), RFC 2104's K XOR ipad / K XOR opad. */
static void start_padded(struct sha256_ctx *ctx, const unsigned char key[SHA256_BLOCK_LEN],
			 unsigned char pad)
{
	unsigned char block[SHA256_BLOCK_LEN];

	for (int i = 0; i < SHA256_BLOCK_LEN; i++)
		block[i] = key[i] ^ pad;
	sha256_init(ctx);
	sha256_update(ctx, block, sizeof(block));
	memset(block, 0, sizeof(block));
}

void hmac_sha256_init(struct hmac_sha256_ctx *ctx, const void *key, size_t key_len)
{
	unsigned char k[SHA256_BLOCK_LEN] = {0};

	/* RFC 2104: keys longer than the block are hashed first; shorter ones
	 * are zero-padded to the block size (the {0} above). */
	if (key_len > SHA256_BLOCK_LEN)
		sha256(key, key_len, k);
	else
		memcpy(k, key, key_len);
	start_padded(&ctx->inner, k, 0x36);
	start_padded(&ctx->outer, k, 0x5c);
	memset(k, 0, sizeof(k));
}

void hmac_sha256_update(struct hmac_sha256_ctx *ctx, const void *data, size_t len)
{
	sha256_update(&ctx->inner, data, len);
}

/* H(K XOR opad, H(K XOR ipad, text)) */
void hmac_sha256_final(struct hmac_sha256_ctx *ctx, unsigned char out[SHA256_DIGEST_LEN])
{
	unsigned char inner_hash[SHA256_DIGEST_LEN];

	sha256_final(&ctx->inner, inner_hash);
	sha256_update(&ctx->outer, inner_hash, sizeof(inner_hash));
	sha256_final(&ctx->outer, out);
}

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		 unsigned char out[SHA256_DIGEST_LEN])
{
	struct hmac_sha256_ctx ctx;

	hmac_sha256_init(&ctx, key, key_len);
	hmac_sha256_update(&ctx, data, len);
	hmac_sha256_final(&ctx, out);
}

static const char B64_ALPHABET[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

size_t base64_encode(const void *in, size_t n, char *out)
{
	const unsigned char *p = in;
	size_t o = 0;

	/* Each 3 input bytes become 4 sextets; a short tail is padded with '='. */
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		out[o++] = B64_ALPHABET[(v >> 18) & 63];
		out[o++] = B64_ALPHABET[(v >> 12) & 63];
		out[o++] = left > 1 ? B64_ALPHABET[(v >> 6) & 63] : '=';
		out[o++] = left > 2 ? B64_ALPHABET[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

/* Value of one alphabet character, or -1; ranges instead of a table so it
 * is obvious that it mirrors B64_ALPHABET. */
static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	size_t pad = 0, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	while (pad < 2 && n > 0 && in[n - 1] == '=') {
		n--;
		pad++;
	}
	/* One leftover sextet cannot carry a whole byte; with padding present the
	 * total must be a multiple of 4 as RFC 4648 writes it. */
	if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0))
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return (long)o;
}

int ct_equal(const void *a, const void *b, size_t n)
{
	/* volatile keeps the compiler from turning this into an early-exit loop;
	 * OR-ing all differences makes the time independent of where they differ. */
	const volatile unsigned char *x = a;
	const volatile unsigned char *y = b;
	unsigned char diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}
