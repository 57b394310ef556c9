/*
 * http.h
 *     The boundary between the delivery worker and libcurl (http.c).
 */
#ifndef WEBHOOKS_HTTP_H
#define WEBHOOKS_HTTP_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#define WEBHOOKS_RESPONSE_KEEP 4096		/* bytes of a response body that are kept */
#define WEBHOOKS_ERROR_SIZE    512

typedef struct WebhooksHttp WebhooksHttp;

#define UUID_TEXT_LEN 36

/* One POST: filled in by the worker, completed by http.c. */
typedef struct WebhooksRequest
{
	/* what to send (owned by the request, reused from one to the next) */
	int64		delivery_id;
	int64		webhook_id;
	int			attempt;
	int64		inflight_key;	/* a first attempt: its inflight_first_attempts row */
	char		event_id[UUID_TEXT_LEN + 1];
	StringInfoData url;
	StringInfoData body;
	struct curl_slist *headers;

	/* what happened */
	TimestampTz started_at;
	double		duration_ms;
	long		http_status;	/* 0: no response */
	bool		failed;			/* no usable response: error says why */
	char		error[WEBHOOKS_ERROR_SIZE];
	char		response[WEBHOOKS_RESPONSE_KEEP + 1];
	size_t		response_len;	/* bytes kept in response */
	size_t		response_total; /* bytes received */
	long		retry_after_s;	/* -1: no Retry-After header */

	/* http.c's own */
	void	   *easy;
	char		curl_error[256];
	bool		refused;		/* the address guard refused the target */
	bool		connected_any;	/* the guard allowed some address of the name */
	bool		in_use;
	struct WebhooksRequest *next_done;
} WebhooksRequest;

extern WebhooksHttp *webhooks_http_create(int max_requests);
extern void webhooks_http_destroy(WebhooksHttp *http);
extern int	webhooks_http_capacity(WebhooksHttp *http);
extern void webhooks_http_set_connection_limit(WebhooksHttp *http, int limit);
extern int	webhooks_http_in_flight(WebhooksHttp *http);
extern WebhooksRequest *webhooks_http_new_request(WebhooksHttp *http);
extern bool webhooks_http_add_header(WebhooksRequest *req, const char *line);
extern void webhooks_http_start(WebhooksHttp *http, WebhooksRequest *req);
extern bool webhooks_http_wait(WebhooksHttp *http, long timeout_ms);
extern WebhooksRequest *webhooks_http_next_done(WebhooksHttp *http);
extern void webhooks_http_release(WebhooksHttp *http, WebhooksRequest *req);
extern bool webhooks_address_allowed(int family, const unsigned char *addr,
									 char *why, size_t whylen);

#endif							/* WEBHOOKS_HTTP_H */
