/*
 * webhooks-receiver.c - a test/demo HTTP receiver for pg-webhooks deliveries.
 *
 * Owns: the command line, the libmicrohttpd server (bound to 127.0.0.1 only),
 * the per-request pipeline (collect body, verify the Standard Webhooks
 * signature, choose the status to answer, log to stdout and a JSONL file),
 * the shared counters with the stats/pid/ready files, --self-test, and clean
 * shutdown on SIGINT/SIGTERM or after --max-requests.
 * SHA-256/HMAC/base64 live in hmac_sha256.c so no crypto library is linked.
 *
 * Used by the demo, end-to-end tests and benchmarks, so it favours being
 * predictable and fast over being a general-purpose server.
 */
#define _GNU_SOURCE

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "hmac_sha256.h"

#define BODY_LIMIT (1024 * 1024)        /* larger bodies get 413 */
#define MAX_SECRETS 16
#define MAX_KEY_LEN 256                 /* decoded secret bytes */
#define STATS_INTERVAL_NS (200 * 1000 * 1000L)
#define EVENT_TYPE_MAX 80
/* Own name for 413: MHD renamed its constant between releases. */
#define HTTP_CONTENT_TOO_LARGE 413

enum sig_result { SIG_VALID, SIG_INVALID, SIG_MISSING, SIG_UNCHECKED };

static const char *const SIG_NAMES[] = { "valid", "invalid", "missing", "unchecked" };

struct options {
	unsigned port;
	unsigned threads;
	int status;
	int fail_status;
	unsigned long fail_first;
	unsigned long fail_every;
	unsigned long delay_ms;
	long retry_after;               /* -1: no Retry-After header */
	unsigned long max_requests;     /* 0: run until signalled */
	bool quiet;
	const char *jsonl_path;
	const char *pidfile;
	const char *ready_file;
	const char *stats_file;
};

static struct options opt = {
	.port = 8787,
	.threads = 2,
	.status = 200,
	.fail_status = 500,
	.retry_after = -1,
};

/* One keyed HMAC state per --secret, set up once and copied per request. */
static struct hmac_sha256_ctx secrets[MAX_SECRETS];
static int n_secrets;

/* Shared by all server threads; atomics keep the hot path lock-free. */
static struct {
	atomic_ullong received;
	atomic_ullong valid;
	atomic_ullong invalid;
	atomic_ullong missing;
	atomic_ullong deliveries;       /* POSTs within limits: drives fail policy */
	atomic_ullong answered;         /* responses completed: drives --max-requests */
	atomic_llong first_us;          /* 0 until the first request */
	atomic_llong last_us;
} stats;

static int jsonl_fd = -1;
static pthread_mutex_t jsonl_mu = PTHREAD_MUTEX_INITIALIZER;

/* Lets --delay sleeps end early at shutdown instead of holding it up. */
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv;
static bool stopping;

/* Built once: MHD responses are reference counted and may be queued on
 * many connections at once, which saves an allocation per request. */
static struct {
	struct MHD_Response *ok;
	struct MHD_Response *fail;
	struct MHD_Response *empty;
	struct MHD_Response *not_allowed;
	struct MHD_Response *too_large;
} responses;

/* Per-request state, hung on MHD's con_cls pointer. */
struct request {
	char *body;
	size_t len;
	size_t cap;
	bool too_large;
	bool responded;
	long long received_us;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static void die_oom(void)
{
	/* A test receiver that runs out of memory cannot report anything useful. */
	fputs("webhooks-receiver: out of memory\n", stderr);
	abort();
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Growable byte buffer used to build log lines. */
struct sbuf {
	char *p;
	size_t len;
	size_t cap;
};

static void sb_reserve(struct sbuf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	b->p = realloc(b->p, cap);
	if (!b->p)
		die_oom();
	b->cap = cap;
}

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char tmp[256];

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* Only used for short numeric fields, so a fixed scratch buffer suffices. */
	if (n > 0)
		sb_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/*
 * Length of the well-formed UTF-8 sequence at s, or 0 if it is not one.
 * Checked so the JSONL output stays valid JSON whatever bytes a client sent.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Reject overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* Appends s as a quoted JSON string; invalid UTF-8 bytes become U+FFFD. */
static void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;

	sb_reserve(b, n + 2);
	sb_put(b, "\"", 1);
	while (i < n) {
		unsigned char c = u[i];
		size_t seq = c >= 0x20 && c != '"' && c != '\\' ? utf8_seq_len(u + i, n - i) : 0;

		if (seq > 0) {
			/* Copy runs of plain text in one go; most bodies are all plain. */
			run += seq;
			i += seq;
			continue;
		}
		sb_put(b, s + i - run, run);
		run = 0;
		switch (c) {
		case '"': sb_put(b, "\\\"", 2); break;
		case '\\': sb_put(b, "\\\\", 2); break;
		case '\n': sb_put(b, "\\n", 2); break;
		case '\r': sb_put(b, "\\r", 2); break;
		case '\t': sb_put(b, "\\t", 2); break;
		default:
			if (c < 0x20)
				sb_printf(b, "\\u%04x", c);
			else
				sb_put(b, "\\ufffd", 6);
		}
		i++;
	}
	sb_put(b, s + i - run, run);
	sb_put(b, "\"", 1);
}

/* Appends s as a JSON string, or null when the header was absent. */
static void sb_json_opt(struct sbuf *b, const char *s)
{
	if (s)
		sb_json_str(b, s, strlen(s));
	else
		sb_puts(b, "null");
}

/* write(2) until done: one call per line keeps O_APPEND lines whole. */
static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			perror("webhooks-receiver: write");
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Writes content to path via a temp file and rename, so readers polling the
 * file never see it half written. */
static int write_file_atomic(const char *path, const char *content)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -1;
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fputs(content, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Signatures                                                          */
/* ------------------------------------------------------------------ */

/* Accepts "whsec_<base64>" as Standard Webhooks prints it, or bare base64. */
static int add_secret(const char *arg)
{
	unsigned char key[MAX_KEY_LEN];
	const char *b64 = strncmp(arg, "whsec_", 6) == 0 ? arg + 6 : arg;
	long key_len;

	if (n_secrets >= MAX_SECRETS) {
		fprintf(stderr, "webhooks-receiver: at most %d --secret options\n", MAX_SECRETS);
		return -1;
	}
	key_len = base64_decode(b64, strlen(b64), key, sizeof(key));
	if (key_len <= 0) {
		fprintf(stderr, "webhooks-receiver: --secret is not valid base64 after whsec_\n");
		return -1;
	}
	hmac_sha256_init(&secrets[n_secrets++], key, (size_t)key_len);
	memset(key, 0, sizeof(key));
	return 0;
}

/* HMAC over "<id>.<timestamp>.<body>" as the Standard Webhooks spec signs it. */
static void sign(int secret, const char *id, const char *ts, const char *body, size_t len,
		 unsigned char out[SHA256_DIGEST_LEN])
{
	struct hmac_sha256_ctx ctx = secrets[secret];

	hmac_sha256_update(&ctx, id, strlen(id));
	hmac_sha256_update(&ctx, ".", 1);
	hmac_sha256_update(&ctx, ts, strlen(ts));
	hmac_sha256_update(&ctx, ".", 1);
	hmac_sha256_update(&ctx, body, len);
	hmac_sha256_final(&ctx, out);
}

/* Does one "v1,<base64>" entry match any of the expected MACs? */
static bool entry_matches(const char *entry, size_t len,
			  unsigned char expected[][SHA256_DIGEST_LEN])
{
	unsigned char got[SHA256_DIGEST_LEN + 3];
	long got_len;
	bool match = false;

	/* Other versions (e.g. v1a, asymmetric) are allowed in the header but
	 * are not ours to check. */
	if (len < 3 || memcmp(entry, "v1,", 3) != 0)
		return false;
	got_len = base64_decode(entry + 3, len - 3, got, sizeof(got));
	if (got_len != SHA256_DIGEST_LEN)
		return false;
	for (int s = 0; s < n_secrets; s++)
		match |= ct_equal(got, expected[s], SHA256_DIGEST_LEN);
	return match;
}

static enum sig_result check_signature(const char *id, const char *ts, const char *header,
				       const char *body, size_t len)
{
	unsigned char expected[MAX_SECRETS][SHA256_DIGEST_LEN];

	if (n_secrets == 0)
		return SIG_UNCHECKED;
	if (!header)
		return SIG_MISSING;
	for (int s = 0; s < n_secrets; s++)
		sign(s, id ? id : "", ts ? ts : "", body, len, expected[s]);
	/* Several space-separated entries let senders rotate keys. */
	for (const char *p = header; *p;) {
		size_t n;

		while (*p == ' ')
			p++;
		n = strcspn(p, " ");
		if (n > 0 && entry_matches(p, n, expected))
			return SIG_VALID;
		p += n;
	}
	return SIG_INVALID;
}

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

/* What was decided about one request, gathered for the log writers. */
struct outcome {
	unsigned long long n;
	int status;
	enum sig_result sig;
	const char *method;
	const char *path;
	const char *id;
	const char *ts;
};

/*
 * Finds the first "type": "..." value by a plain text scan. Only feeds the
 * human-readable line, so a wrong guess on odd bodies costs nothing and a
 * JSON parser would be wasted on the hot path.
 */
static void scan_event_type(const char *body, size_t len, char *out, size_t cap)
{
	const char *end = body + len;
	const char *p = memmem(body, len, "\"type\"", 6);
	size_t o = 0;

	strcpy(out, "-");
	if (!p)
		return;
	for (p += 6; p < end && isspace((unsigned char)*p); p++)
		;
	if (p >= end || *p++ != ':')
		return;
	for (; p < end && isspace((unsigned char)*p); p++)
		;
	if (p >= end || *p++ != '"')
		return;
	while (p < end && *p != '"' && o + 1 < cap) {
		unsigned char c = (unsigned char)*p++;

		/* Keep the line one line and printable. */
		out[o++] = c > 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[o] = '\0';
	if (o == 0)
		strcpy(out, "-");
}

static void print_human(const struct outcome *oc, const struct request *r)
{
	char type[EVENT_TYPE_MAX];

	scan_event_type(r->body ? r->body : "", r->len, type, sizeof(type));
	flockfile(stdout);
	printf("#%llu %s %s sig=%s %d", oc->n, type, oc->id ? oc->id : "-",
	       SIG_NAMES[oc->sig], oc->status);
	if (strcmp(oc->method, MHD_HTTP_METHOD_POST) != 0)
		printf(" (%s %s)", oc->method, oc->path);
	putchar('\n');
	fflush(stdout);
	funlockfile(stdout);
}

struct header_walk {
	struct sbuf *b;
	bool first;
};

static enum MHD_Result add_header_json(void *cls, enum MHD_ValueKind kind,
				       const char *key, const char *value)
{
	struct header_walk *w = cls;
	char name[256];
	size_t n = 0;

	(void)kind;
	/* HTTP names are case-insensitive; lower-casing gives tests one spelling. */
	for (; key[n] && n + 1 < sizeof(name); n++)
		name[n] = (char)tolower((unsigned char)key[n]);
	name[n] = '\0';
	sb_puts(w->b, w->first ? "" : ",");
	w->first = false;
	sb_json_str(w->b, name, n);
	sb_puts(w->b, ":");
	sb_json_opt(w->b, value ? value : "");
	return MHD_YES;
}

static void write_jsonl(const struct outcome *oc, const struct request *r,
			struct MHD_Connection *conn)
{
	struct sbuf b = {0};
	struct header_walk walk = { &b, true };

	sb_reserve(&b, r->len + 1024);
	sb_printf(&b, "{\"n\":%llu,\"received_at\":%lld.%06lld,\"method\":", oc->n,
		  r->received_us / 1000000, r->received_us % 1000000);
	sb_json_opt(&b, oc->method);
	sb_puts(&b, ",\"path\":");
	sb_json_opt(&b, oc->path);
	sb_printf(&b, ",\"status\":%d,\"webhook_id\":", oc->status);
	sb_json_opt(&b, oc->id);
	sb_puts(&b, ",\"webhook_timestamp\":");
	sb_json_opt(&b, oc->ts);
	sb_printf(&b, ",\"signature\":\"%s\",\"headers\":{", SIG_NAMES[oc->sig]);
	MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_json, &walk);
	sb_puts(&b, "},\"body\":");
	sb_json_str(&b, r->body ? r->body : "", r->len);
	sb_puts(&b, "}\n");

	/* Lines from concurrent requests must not interleave. */
	pthread_mutex_lock(&jsonl_mu);
	write_all(jsonl_fd, b.p, b.len);
	pthread_mutex_unlock(&jsonl_mu);
	free(b.p);
}

/* ------------------------------------------------------------------ */
/* Counters and stats file                                             */
/* ------------------------------------------------------------------ */

static void record_time(long long us)
{
	long long seen = 0;

	/* CAS loops because requests finish out of order across threads. */
	while (!atomic_compare_exchange_weak(&stats.first_us, &seen, us))
		if (seen != 0 && seen <= us)
			break;
	seen = atomic_load(&stats.last_us);
	while (seen < us && !atomic_compare_exchange_weak(&stats.last_us, &seen, us))
		;
}

static unsigned long long count_request(enum sig_result sig, long long received_us)
{
	if (sig == SIG_VALID)
		atomic_fetch_add(&stats.valid, 1);
	else if (sig == SIG_INVALID)
		atomic_fetch_add(&stats.invalid, 1);
	else if (sig == SIG_MISSING)
		atomic_fetch_add(&stats.missing, 1);
	record_time(received_us);
	return atomic_fetch_add(&stats.received, 1) + 1;
}

static void write_stats_file(void)
{
	char line[512];
	long long first = atomic_load(&stats.first_us);
	long long last = atomic_load(&stats.last_us);

	if (!opt.stats_file)
		return;
	snprintf(line, sizeof(line),
		 "received=%llu valid=%llu invalid=%llu missing=%llu "
		 "first_at=%lld.%06lld last_at=%lld.%06lld\n",
		 atomic_load(&stats.received), atomic_load(&stats.valid),
		 atomic_load(&stats.invalid), atomic_load(&stats.missing),
		 first / 1000000, first % 1000000, last / 1000000, last % 1000000);
	if (write_file_atomic(opt.stats_file, line) != 0)
		perror("webhooks-receiver: stats file");
}

/* ------------------------------------------------------------------ */
/* Request handling                                                    */
/* ------------------------------------------------------------------ */

/* --fail-first N, then every --fail-every K-th delivery, get the fail status. */
static int delivery_status(void)
{
	unsigned long long i = atomic_fetch_add(&stats.deliveries, 1) + 1;

	if (i <= opt.fail_first || (opt.fail_every && i % opt.fail_every == 0))
		return opt.fail_status;
	return opt.status;
}

static struct MHD_Response *response_for(int status)
{
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		return responses.not_allowed;
	if (status == HTTP_CONTENT_TOO_LARGE)
		return responses.too_large;
	/* These statuses must not carry a body (RFC 9110), or keep-alive
	 * clients would misread the next response. */
	if (status == MHD_HTTP_NO_CONTENT || status == MHD_HTTP_NOT_MODIFIED)
		return responses.empty;
	return status >= 400 ? responses.fail : responses.ok;
}

/* Sleeps for --delay, waking early if the receiver is shutting down. */
static void delay_response(void)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(opt.delay_ms / 1000);
	until.tv_nsec += (long)(opt.delay_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&stop_mu);
	while (!stopping && pthread_cond_timedwait(&stop_cv, &stop_mu, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&stop_mu);
}

static enum MHD_Result finish_request(struct MHD_Connection *conn, struct request *r,
				      const char *url, const char *method)
{
	struct outcome oc = { .method = method, .path = url };
	bool is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	const char *sig_header;
	enum MHD_Result ret;

	oc.id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-id");
	oc.ts = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-timestamp");
	sig_header = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-signature");

	/* A discarded oversized body cannot be verified; with a signature
	 * present that counts as invalid rather than as a fourth category. */
	if (r->too_large && n_secrets > 0)
		oc.sig = sig_header ? SIG_INVALID : SIG_MISSING;
	else
		oc.sig = check_signature(oc.id, oc.ts, sig_header, r->body ? r->body : "", r->len);

	if (!is_post)
		oc.status = MHD_HTTP_METHOD_NOT_ALLOWED;
	else if (r->too_large)
		oc.status = HTTP_CONTENT_TOO_LARGE;
	else
		oc.status = delivery_status();

	oc.n = count_request(oc.sig, r->received_us);
	if (!opt.quiet)
		print_human(&oc, r);
	if (jsonl_fd >= 0)
		write_jsonl(&oc, r, conn);
	if (opt.delay_ms > 0)
		delay_response();

	ret = MHD_queue_response(conn, (unsigned)oc.status, response_for(oc.status));
	r->responded = ret == MHD_YES;
	return ret;
}

/* Keeps up to BODY_LIMIT bytes; beyond that the rest is read and dropped so
 * the client still gets a clean 413 on a usable connection. */
static void append_body(struct request *r, const char *data, size_t n)
{
	if (r->too_large || r->len + n > BODY_LIMIT) {
		r->too_large = true;
		r->len = 0;
		return;
	}
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;

		while (cap < r->len + n + 1)
			cap *= 2;
		r->body = realloc(r->body, cap);
		if (!r->body)
			die_oom();
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	/* NUL-terminated so string helpers are safe on bodies without NULs. */
	r->body[r->len] = '\0';
}

static struct request *request_new(struct MHD_Connection *conn)
{
	struct request *r = calloc(1, sizeof(*r));
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);

	if (!r)
		die_oom();
	r->received_us = now_us();
	/* Size the buffer from Content-Length once rather than growing it. */
	if (cl) {
		unsigned long long want = strtoull(cl, NULL, 10);

		if (want > 0 && want <= BODY_LIMIT) {
			r->cap = (size_t)want + 1;
			r->body = malloc(r->cap);
			if (!r->body)
				die_oom();
		}
	}
	return r;
}

/* MHD calls this once when headers are in, once per body chunk, and once
 * more with no data when the request is complete. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct request *r = *con_cls;

	(void)cls;
	(void)version;
	if (!r) {
		*con_cls = request_new(conn);
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		append_body(r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	return finish_request(conn, r, url, method);
}

/* Runs once the response went out (or the connection died): the place to
 * free request state and to count answers for --max-requests. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *r = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (!r)
		return;
	if (r->responded && opt.max_requests &&
	    atomic_fetch_add(&stats.answered, 1) + 1 == opt.max_requests)
		kill(getpid(), SIGUSR1);        /* wakes main's sigtimedwait */
	free(r->body);
	free(r);
	*con_cls = NULL;
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

static struct MHD_Response *make_response(const char *body, const char *allow)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);

	if (!resp)
		die_oom();
	if (body[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	return resp;
}

static void build_responses(void)
{
	responses.ok = make_response("{\"ok\":true}", NULL);
	responses.fail = make_response("{\"ok\":false}", NULL);
	responses.empty = make_response("", NULL);
	responses.not_allowed = make_response("{\"ok\":false,\"error\":\"method not allowed\"}",
					      "POST");
	responses.too_large = make_response("{\"ok\":false,\"error\":\"body too large\"}", NULL);
	if (opt.retry_after >= 0) {
		char v[32];

		snprintf(v, sizeof(v), "%ld", opt.retry_after);
		MHD_add_response_header(responses.fail, MHD_HTTP_HEADER_RETRY_AFTER, v);
	}
}

static void destroy_responses(void)
{
	MHD_destroy_response(responses.ok);
	MHD_destroy_response(responses.fail);
	MHD_destroy_response(responses.empty);
	MHD_destroy_response(responses.not_allowed);
	MHD_destroy_response(responses.too_large);
}

static struct MHD_Daemon *start_server(void)
{
	struct sockaddr_in addr = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)opt.port),
	};
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem ops[8];
	int n = 0;

	/* Loopback only: this server accepts anything and must never be
	 * reachable from other hosts. */
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ops[n++] = (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, &addr };
	ops[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_COMPLETED,
					    (intptr_t)on_completed, NULL };
	ops[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT, 1000, NULL };
	ops[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL };
	ops[n++] = (struct MHD_OptionItem){ MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL };
	if (opt.delay_ms > 0) {
		/* A sleeping handler blocks its thread, so give each connection
		 * its own thread and let delays overlap. */
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	} else {
		/* Event loop per worker thread: the fast path for benchmarks. */
		flags |= MHD_USE_EPOLL | MHD_USE_TURBO;
		if (opt.threads > 1)
			ops[n++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE,
							    (intptr_t)opt.threads, NULL };
	}
	ops[n] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
	return MHD_start_daemon(flags, (uint16_t)opt.port, NULL, NULL, on_request, NULL,
				MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
}

static void init_stop_cond(void)
{
	pthread_condattr_t attr;

	/* Monotonic so a wall-clock jump cannot stretch or cut a --delay. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&stop_cv, &attr);
	pthread_condattr_destroy(&attr);
}

static void signal_stopping(void)
{
	pthread_mutex_lock(&stop_mu);
	stopping = true;
	pthread_cond_broadcast(&stop_cv);
	pthread_mutex_unlock(&stop_mu);
}

static int write_pid_and_ready(void)
{
	char buf[128];

	if (opt.pidfile) {
		snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
		if (write_file_atomic(opt.pidfile, buf) != 0) {
			perror("webhooks-receiver: pidfile");
			return -1;
		}
	}
	if (opt.ready_file) {
		snprintf(buf, sizeof(buf), "http://127.0.0.1:%u/\n", opt.port);
		if (write_file_atomic(opt.ready_file, buf) != 0) {
			perror("webhooks-receiver: ready file");
			return -1;
		}
	}
	return 0;
}

/* Waits for SIGINT/SIGTERM (or the internal SIGUSR1 from --max-requests),
 * refreshing the stats file every 200 ms meanwhile. */
static void wait_for_stop(const sigset_t *set)
{
	const struct timespec tick = { 0, STATS_INTERVAL_NS };

	for (;;) {
		if (sigtimedwait(set, NULL, &tick) > 0)
			return;
		write_stats_file();
	}
}

/* ------------------------------------------------------------------ */
/* Self-test                                                           */
/* ------------------------------------------------------------------ */

static bool hex_equal(const unsigned char *bin, size_t n, const char *hex)
{
	char buf[2 * SHA256_DIGEST_LEN + 1];

	for (size_t i = 0; i < n; i++)
		sprintf(buf + 2 * i, "%02x", bin[i]);
	return strcmp(buf, hex) == 0;
}

static bool check(const char *name, bool ok)
{
	printf("%s - %s\n", ok ? "ok" : "FAILED", name);
	return ok;
}

static bool self_test_sha256(void)
{
	unsigned char d[SHA256_DIGEST_LEN];
	struct sha256_ctx ctx;
	char chunk[1001];
	bool ok = true;

	sha256("abc", 3, d);
	ok &= check("sha256(\"abc\")", hex_equal(d, 32,
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	sha256("", 0, d);
	ok &= check("sha256(\"\")", hex_equal(d, 32,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	/* 56 bytes: the padding needs a second block. */
	sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, d);
	ok &= check("sha256(two-block message)", hex_equal(d, 32,
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
	/* One million 'a' fed in uneven pieces exercises the streaming path. */
	memset(chunk, 'a', sizeof(chunk));
	sha256_init(&ctx);
	for (int i = 0; i < 1000; i++)
		sha256_update(&ctx, chunk, i % 2 ? 999 : 1001);
	sha256_final(&ctx, d);
	ok &= check("sha256(million 'a')", hex_equal(d, 32,
		"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
	return ok;
}

static bool self_test_hmac(void)
{
	unsigned char d[SHA256_DIGEST_LEN];
	unsigned char long_key[131];
	const char *msg6 = "Test Using Larger Than Block-Size Key - Hash Key First";
	bool ok = true;

	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
	ok &= check("RFC 4231 HMAC-SHA256 test case 2", hex_equal(d, 32,
		"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
	memset(long_key, 0xaa, sizeof(long_key));
	hmac_sha256(long_key, sizeof(long_key), msg6, strlen(msg6), d);
	ok &= check("RFC 4231 HMAC-SHA256 test case 6", hex_equal(d, 32,
		"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
	return ok;
}

static bool self_test_base64(void)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const coded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
					     "Zm9vYmFy" };
	unsigned char back[8];
	char enc[16];
	bool ok = true;

	/* RFC 4648 section 10 vectors, both directions. */
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		size_t n = strlen(plain[i]);
		long m = base64_decode(coded[i], strlen(coded[i]), back, sizeof(back));

		base64_encode(plain[i], n, enc);
		ok &= strcmp(enc, coded[i]) == 0 && m == (long)n && memcmp(back, plain[i], n) == 0;
	}
	ok &= base64_decode("Zm9v!", 5, back, sizeof(back)) == -1;
	return check("RFC 4648 base64 vectors", ok);
}

static bool self_test_webhook(void)
{
	const char *body = "{\"test\": 2432232314}";
	bool ok;

	n_secrets = 0;
	if (add_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") != 0)
		return check("Standard Webhooks vector", false);
	ok = check_signature("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
			     "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
			     body, strlen(body)) == SIG_VALID;
	ok &= check_signature("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265331",
			      "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
			      body, strlen(body)) == SIG_INVALID;
	n_secrets = 0;
	return check("Standard Webhooks vector", ok);
}

static int self_test(void)
{
	bool ok = self_test_sha256();

	ok &= self_test_hmac();
	ok &= self_test_base64();
	ok &= self_test_webhook();
	printf("self-test %s\n", ok ? "passed" : "FAILED");
	return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* Command line                                                        */
/* ------------------------------------------------------------------ */

static void usage(FILE *to)
{
	fputs("usage: webhooks-receiver [options]\n"
	      "  --port N            listen on 127.0.0.1:N (default 8787)\n"
	      "  --secret whsec_...  verify signatures with this secret (repeatable)\n"
	      "  --status CODE       status to answer (default 200)\n"
	      "  --fail-first N      answer the fail status to the first N deliveries\n"
	      "  --fail-every K      answer the fail status to every K-th delivery\n"
	      "  --fail-status CODE  status for failures (default 500)\n"
	      "  --retry-after S     add Retry-After: S to responses with status >= 400\n"
	      "  --delay MS          wait MS milliseconds before answering\n"
	      "  --jsonl FILE        append one JSON line per request\n"
	      "  --stats-file FILE   keep counters in FILE (every 200 ms and on exit)\n"
	      "  --pidfile FILE      write the process id to FILE\n"
	      "  --ready-file FILE   write FILE once listening\n"
	      "  --max-requests N    exit 0 after answering N requests\n"
	      "  --threads N         server threads when --delay is 0 (default 2)\n"
	      "  --quiet             no per-request lines on stdout\n"
	      "  --self-test         check the crypto against known vectors and exit\n"
	      "  --help              show this help\n", to);
}

/* Strict decimal parse: the whole argument must be a number in range. */
static bool parse_num(const char *name, const char *arg, unsigned long min,
		      unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v < min || v > max) {
		fprintf(stderr, "webhooks-receiver: --%s wants a number from %lu to %lu, got '%s'\n",
			name, min, max, arg);
		return false;
	}
	*out = v;
	return true;
}

enum {
	OPT_PORT = 256, OPT_SECRET, OPT_STATUS, OPT_FAIL_FIRST, OPT_FAIL_EVERY, OPT_FAIL_STATUS,
	OPT_RETRY_AFTER, OPT_DELAY, OPT_JSONL, OPT_STATS_FILE, OPT_PIDFILE, OPT_READY_FILE,
	OPT_MAX_REQUESTS, OPT_THREADS, OPT_QUIET, OPT_SELF_TEST, OPT_HELP,
};

static const struct option LONG_OPTIONS[] = {
	{ "port", required_argument, NULL, OPT_PORT },
	{ "secret", required_argument, NULL, OPT_SECRET },
	{ "status", required_argument, NULL, OPT_STATUS },
	{ "fail-first", required_argument, NULL, OPT_FAIL_FIRST },
	{ "fail-every", required_argument, NULL, OPT_FAIL_EVERY },
	{ "fail-status", required_argument, NULL, OPT_FAIL_STATUS },
	{ "retry-after", required_argument, NULL, OPT_RETRY_AFTER },
	{ "delay", required_argument, NULL, OPT_DELAY },
	{ "jsonl", required_argument, NULL, OPT_JSONL },
	{ "stats-file", required_argument, NULL, OPT_STATS_FILE },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "ready-file", required_argument, NULL, OPT_READY_FILE },
	{ "max-requests", required_argument, NULL, OPT_MAX_REQUESTS },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "self-test", no_argument, NULL, OPT_SELF_TEST },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

/* Applies one numeric option; false on a bad value. */
static bool set_number(int code, const char *arg)
{
	unsigned long v = 0;

	switch (code) {
	case OPT_PORT:
		if (!parse_num("port", arg, 1, 65535, &v))
			return false;
		opt.port = (unsigned)v;
		return true;
	case OPT_STATUS:
	case OPT_FAIL_STATUS:
		/* 1xx is not a final status, so it cannot answer a request. */
		if (!parse_num(code == OPT_STATUS ? "status" : "fail-status", arg, 200, 599, &v))
			return false;
		*(code == OPT_STATUS ? &opt.status : &opt.fail_status) = (int)v;
		return true;
	case OPT_FAIL_FIRST:
		return parse_num("fail-first", arg, 0, ULONG_MAX, &opt.fail_first);
	case OPT_FAIL_EVERY:
		return parse_num("fail-every", arg, 0, ULONG_MAX, &opt.fail_every);
	case OPT_RETRY_AFTER:
		if (!parse_num("retry-after", arg, 0, 1000000000UL, &v))
			return false;
		opt.retry_after = (long)v;
		return true;
	case OPT_DELAY:
		return parse_num("delay", arg, 0, 3600000UL, &opt.delay_ms);
	case OPT_MAX_REQUESTS:
		return parse_num("max-requests", arg, 1, ULONG_MAX, &opt.max_requests);
	case OPT_THREADS:
		if (!parse_num("threads", arg, 1, 64, &v))
			return false;
		opt.threads = (unsigned)v;
		return true;
	}
	return false;
}

/* Returns -1 to go on running, or an exit code (2 for usage errors). */
static int parse_args(int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, "", LONG_OPTIONS, NULL)) != -1) {
		switch (c) {
		case OPT_SECRET:
			if (add_secret(optarg) != 0)
				return 2;
			break;
		case OPT_JSONL: opt.jsonl_path = optarg; break;
		case OPT_STATS_FILE: opt.stats_file = optarg; break;
		case OPT_PIDFILE: opt.pidfile = optarg; break;
		case OPT_READY_FILE: opt.ready_file = optarg; break;
		case OPT_QUIET: opt.quiet = true; break;
		case OPT_SELF_TEST: return self_test();
		case OPT_HELP: usage(stdout); return 0;
		case '?': usage(stderr); return 2;
		default:
			if (!set_number(c, optarg))
				return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "webhooks-receiver: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static void cleanup_files(void)
{
	if (opt.pidfile)
		unlink(opt.pidfile);
	if (opt.ready_file)
		unlink(opt.ready_file);
}

static void print_summary(void)
{
	fprintf(stderr, "received %llu requests (valid %llu, invalid %llu, missing %llu)\n",
		atomic_load(&stats.received), atomic_load(&stats.valid),
		atomic_load(&stats.invalid), atomic_load(&stats.missing));
}

int main(int argc, char **argv)
{
	struct MHD_Daemon *daemon;
	sigset_t set;
	int rc = parse_args(argc, argv);

	if (rc >= 0)
		return rc;
	/* Block the stop signals before MHD starts threads so they inherit the
	 * mask and only main's sigtimedwait ever takes them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	init_stop_cond();

	/* A stale ready file from an earlier run would fool a waiting script. */
	if (opt.ready_file)
		unlink(opt.ready_file);
	if (opt.jsonl_path) {
		jsonl_fd = open(opt.jsonl_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (jsonl_fd < 0) {
			perror(opt.jsonl_path);
			return 1;
		}
	}
	build_responses();
	daemon = start_server();
	if (!daemon) {
		fprintf(stderr, "webhooks-receiver: cannot listen on 127.0.0.1:%u\n", opt.port);
		destroy_responses();
		return 1;
	}
	write_stats_file();
	if (write_pid_and_ready() != 0) {
		MHD_stop_daemon(daemon);
		destroy_responses();
		cleanup_files();
		return 1;
	}
	if (!opt.quiet)
		fprintf(stderr, "webhooks-receiver: listening on http://127.0.0.1:%u/\n", opt.port);

	wait_for_stop(&set);

	signal_stopping();
	MHD_stop_daemon(daemon);
	write_stats_file();
	print_summary();
	destroy_responses();
	cleanup_files();
	if (jsonl_fd >= 0)
		close(jsonl_fd);
	return 0;
}
