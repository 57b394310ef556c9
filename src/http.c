/*
 * http.c
 *     Sending webhook POSTs with libcurl's multi interface, many at once,
 *     while waiting on the worker's latch and curl's sockets together.
 *
 * curl tells us which sockets it wants watched (CURLMOPT_SOCKETFUNCTION)
 * and when it next needs a timeout (CURLMOPT_TIMERFUNCTION); we keep those
 * in a PostgreSQL WaitEventSet next to the process latch, so a SIGTERM, a
 * SIGHUP or new work interrupts a wait on a slow receiver at once, and
 * postmaster death ends the process.  The set is rebuilt only when curl
 * opens or closes a socket, which with keep-alive is rare.
 *
 * No PostgreSQL error may be raised inside a curl callback (curl's state
 * would be left half-updated): callbacks only record what happened in
 * preallocated memory, and the caller turns it into rows afterwards.
 *
 * Also owns the guard against server-side request forgery: the address
 * curl is about to connect to (after DNS resolution, so names pointing at
 * private addresses are caught too) is checked in CURLOPT_OPENSOCKETFUNCTION.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "http.h"
#include "webhooks.h"

/* A socket curl asked us to watch. */
typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
	int			pos;			/* position in the WaitEventSet, -1 if none */
	bool		changed;
} WatchedSocket;

struct WebhooksHttp
{
	MemoryContext mcxt;
	CURLM	   *multi;
	int			nrequests;
	WebhooksRequest *requests;
	int			in_flight;
	WebhooksRequest *done_head;
	WebhooksRequest *done_tail;

	/* sockets, as told by curl's socket callback */
	int			nsockets;
	int			max_sockets;
	WatchedSocket *sockets;
	bool		sockets_dirty;	/* added or removed: rebuild the set */
	bool		sockets_overflow;

	/* curl's timer: when it wants CURL_SOCKET_TIMEOUT, or -1 */
	TimestampTz timer_deadline;
	bool		timer_set;

	WaitEventSet *wait_set;
	WaitEvent  *occurred;
};

static bool curl_initialized = false;

/* ---------------------------------------------------------------------
 * The address guard
 * ---------------------------------------------------------------------
 */

typedef struct BlockedRange
{
	int			family;
	const char *prefix;
	int			bits;
	const char *what;
} BlockedRange;

/* Where a webhook may not go unless webhooks.allowed_networks says so. */
static const BlockedRange blocked_ranges[] = {
	{AF_INET, "0.0.0.0", 8, "a \"this network\" address"},
	{AF_INET, "10.0.0.0", 8, "a private address"},
	{AF_INET, "100.64.0.0", 10, "a shared (carrier-grade NAT) address"},
	{AF_INET, "127.0.0.0", 8, "a loopback address"},
	{AF_INET, "169.254.0.0", 16, "a link-local address (cloud metadata lives there)"},
	{AF_INET, "172.16.0.0", 12, "a private address"},
	{AF_INET, "192.0.0.0", 24, "a reserved address"},
	{AF_INET, "192.168.0.0", 16, "a private address"},
	{AF_INET, "198.18.0.0", 15, "a benchmarking address"},
	{AF_INET, "224.0.0.0", 4, "a multicast address"},
	{AF_INET, "240.0.0.0", 4, "a reserved address"},
	{AF_INET6, "::", 128, "the unspecified address"},
	{AF_INET6, "::1", 128, "a loopback address"},
	{AF_INET6, "fc00::", 7, "a unique local (private) address"},
	{AF_INET6, "fe80::", 10, "a link-local address"},
	{AF_INET6, "ff00::", 8, "a multicast address"},
};

static bool
prefix_matches(const unsigned char *addr, const unsigned char *prefix, int bits)
{
	int			full = bits / 8;
	int			rest = bits % 8;

	if (memcmp(addr, prefix, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((addr[full] ^ prefix[full]) & (0xff << (8 - rest))) == 0;
}

static bool
in_allowed_networks(int family, const unsigned char *addr)
{
	WebhooksNetworkList *list = webhooks_allowed_networks;
	int			i;

	if (list == NULL)
		return false;
	for (i = 0; i < list->n; i++)
		if (list->nets[i].family == family &&
			prefix_matches(addr, list->nets[i].addr, list->nets[i].bits))
			return true;
	return false;
}

/*
 * May a webhook connect to this address?  If not, why (for the attempt's
 * error text).  IPv4-mapped IPv6 addresses are judged as the IPv4 address
 * they carry.  Safe in a curl callback: no allocation, no ereport.
 */
bool
webhooks_address_allowed(int family, const unsigned char *addr, char *why, size_t whylen)
{
	static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	unsigned char prefix[16];
	int			i;

	if (family == AF_INET6 && memcmp(addr, v4mapped, 12) == 0)
		return webhooks_address_allowed(AF_INET, addr + 12, why, whylen);
	if (in_allowed_networks(family, addr))
		return true;
	for (i = 0; i < lengthof(blocked_ranges); i++)
	{
		const BlockedRange *r = &blocked_ranges[i];

		if (r->family != family || inet_pton(family, r->prefix, prefix) != 1)
			continue;
		if (prefix_matches(addr, prefix, r->bits))
		{
			char		text[INET6_ADDRSTRLEN];

			inet_ntop(family, addr, text, sizeof(text));
			snprintf(why, whylen,
					 "refused to connect to %s: %s; list it in webhooks.allowed_networks to allow it",
					 text, r->what);
			return false;
		}
	}
	return true;
}

/* curl is about to open a socket to a resolved address: check it first. */
static curl_socket_t
open_socket_callback(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	WebhooksRequest *req = (WebhooksRequest *) clientp;
	const unsigned char *addr = NULL;
	char		why[WEBHOOKS_ERROR_SIZE];

	if (address->family == AF_INET)
		addr = (const unsigned char *) &((struct sockaddr_in *) &address->addr)->sin_addr;
	else if (address->family == AF_INET6)
		addr = (const unsigned char *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr;
	if (addr == NULL ||
		!webhooks_address_allowed(address->family, addr, why, sizeof(why)))
	{
		/*
		 * A name with several addresses: once an allowed one was tried, its
		 * outcome (curl's error) is the one to report, not this refusal.
		 */
		if (!req->connected_any)
		{
			strlcpy(req->error, addr ? why : "refused to connect: not an IP address",
					sizeof(req->error));
			req->refused = true;
		}
		return CURL_SOCKET_BAD;
	}
	req->connected_any = true;
	req->refused = false;
	req->error[0] = '\0';
	return socket(address->family, address->socktype, address->protocol);
}

/* ---------------------------------------------------------------------
 * Response callbacks
 * ---------------------------------------------------------------------
 */

#define RESPONSE_ABORT_BYTES (1024 * 1024)

/* Keep the first 4 KB of the body; give up on bodies past 1 MB. */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	WebhooksRequest *req = (WebhooksRequest *) userp;
	size_t		n = size * nmemb;
	size_t		room = WEBHOOKS_RESPONSE_KEEP - req->response_len;
	size_t		keep = Min(n, room);

	memcpy(req->response + req->response_len, data, keep);
	req->response_len += keep;
	req->response[req->response_len] = '\0';
	req->response_total += n;
	if (req->response_total > RESPONSE_ABORT_BYTES)
		return 0;				/* curl ends the transfer with a write error */
	return n;
}

/* Pick up Retry-After (seconds or an HTTP date). */
static size_t
header_callback(char *line, size_t size, size_t nmemb, void *userp)
{
	WebhooksRequest *req = (WebhooksRequest *) userp;
	size_t		n = size * nmemb;
	static const char name[] = "retry-after:";
	char		value[128];
	size_t		len;

	if (n <= sizeof(name) - 1 || pg_strncasecmp(line, name, sizeof(name) - 1) != 0)
		return n;
	len = Min(n - (sizeof(name) - 1), sizeof(value) - 1);
	memcpy(value, line + sizeof(name) - 1, len);
	value[len] = '\0';
	{
		char	   *v = value;
		char	   *end;
		long		secs;

		while (*v == ' ' || *v == '\t')
			v++;
		secs = strtol(v, &end, 10);
		if (end != v && (*end == '\r' || *end == '\n' || *end == '\0' || *end == ' '))
			req->retry_after_s = Max(secs, 0);
		else
		{
			time_t		when = curl_getdate(v, NULL);

			if (when > 0)
				req->retry_after_s = Max((long) (when - time(NULL)), 0);
		}
	}
	return n;
}

/* ---------------------------------------------------------------------
 * Socket and timer callbacks: record, never act
 * ---------------------------------------------------------------------
 */

static int
find_socket(WebhooksHttp *http, curl_socket_t fd)
{
	int			i;

	for (i = 0; i < http->nsockets; i++)
		if (http->sockets[i].fd == fd)
			return i;
	return -1;
}

static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	WebhooksHttp *http = (WebhooksHttp *) userp;
	int			i = find_socket(http, fd);

	if (what == CURL_POLL_REMOVE)
	{
		if (i >= 0)
		{
			http->sockets[i] = http->sockets[--http->nsockets];
			http->sockets_dirty = true;
		}
		return 0;
	}
	if (i < 0)
	{
		if (http->nsockets >= http->max_sockets)
		{
			http->sockets_overflow = true;
			return -1;			/* curl fails the transfers on this socket */
		}
		i = http->nsockets++;
		http->sockets[i].fd = fd;
		http->sockets[i].pos = -1;
		http->sockets_dirty = true;
	}
	http->sockets[i].what = what;
	http->sockets[i].changed = true;
	return 0;
}

static int
timer_callback(CURLM *multi, long timeout_ms, void *userp)
{
	WebhooksHttp *http = (WebhooksHttp *) userp;

	http->timer_set = timeout_ms >= 0;
	if (http->timer_set)
		http->timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/* ---------------------------------------------------------------------
 * Setup
 * ---------------------------------------------------------------------
 */

static void
curl_check_multi(CURLMcode rc, const char *what)
{
	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not %s", what),
				 errdetail_internal("%s", curl_multi_strerror(rc))));
}

/*
 * How many connections curl may keep.  Requests in flight are capped by the
 * worker (its request slots, webhooks.max_connections); here, at most limit
 * connections to any one receiver, and up to twice limit (at least limit +
 * 16) open in all, so that when deliveries fan out over several receivers
 * an idle keep-alive connection to one of them is not closed just to open
 * one to another (measured with 10 receivers and the limit as the total:
 * a new TCP connection for about half the requests).
 */
static void
set_connection_limits(WebhooksHttp *http, int limit)
{
	long		open = Max(2 * limit, limit + 16);

	curl_check_multi(curl_multi_setopt(http->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) limit),
					 "set up curl");
	curl_check_multi(curl_multi_setopt(http->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, open),
					 "set up curl");
	curl_check_multi(curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, open),
					 "set up curl");
}

WebhooksHttp *
webhooks_http_create(int max_requests)
{
	MemoryContext mcxt = AllocSetContextCreate(TopMemoryContext, "webhooks http",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	WebhooksHttp *http = palloc0(sizeof(WebhooksHttp));
	int			i;

	if (!curl_initialized)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("could not initialize libcurl")));
		curl_initialized = true;
	}
	http->mcxt = mcxt;
	http->nrequests = max_requests;
	http->requests = palloc0(sizeof(WebhooksRequest) * max_requests);
	for (i = 0; i < max_requests; i++)
	{
		initStringInfo(&http->requests[i].url);
		initStringInfo(&http->requests[i].body);
		http->requests[i].easy = curl_easy_init();
		if (http->requests[i].easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a curl handle")));
	}
	/* a connection per request, plus resolver sockets */
	http->max_sockets = 2 * max_requests + 16;
	http->sockets = palloc0(sizeof(WatchedSocket) * http->max_sockets);
	http->occurred = palloc0(sizeof(WaitEvent) * (http->max_sockets + 2));
	http->sockets_dirty = true;

	http->multi = curl_multi_init();
	if (http->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a curl multi handle")));
	curl_check_multi(curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, socket_callback), "set up curl");
	curl_check_multi(curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http), "set up curl");
	curl_check_multi(curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, timer_callback), "set up curl");
	curl_check_multi(curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http), "set up curl");
	set_connection_limits(http, max_requests);
	MemoryContextSwitchTo(old);
	return http;
}

/* Frees every curl resource: the worker calls it on exit and on reload. */
void
webhooks_http_destroy(WebhooksHttp *http)
{
	int			i;

	if (http == NULL)
		return;
	for (i = 0; i < http->nrequests; i++)
	{
		WebhooksRequest *req = &http->requests[i];

		if (req->in_use && req->easy)
			curl_multi_remove_handle(http->multi, req->easy);
		if (req->headers)
			curl_slist_free_all(req->headers);
		if (req->easy)
			curl_easy_cleanup(req->easy);
	}
	curl_multi_cleanup(http->multi);
	if (http->wait_set)
		FreeWaitEventSet(http->wait_set);
	MemoryContextDelete(http->mcxt);
}

int
webhooks_http_capacity(WebhooksHttp *http)
{
	return http->nrequests;
}

/* Lower the number of connections curl may open (up to the capacity). */
void
webhooks_http_set_connection_limit(WebhooksHttp *http, int limit)
{
	set_connection_limits(http, Min(limit, http->nrequests));
}

int
webhooks_http_in_flight(WebhooksHttp *http)
{
	return http->in_flight;
}

/* A free request slot, cleared, or NULL if all are in flight. */
WebhooksRequest *
webhooks_http_new_request(WebhooksHttp *http)
{
	int			i;

	for (i = 0; i < http->nrequests; i++)
	{
		WebhooksRequest *req = &http->requests[i];

		if (req->in_use)
			continue;
		req->in_use = true;
		resetStringInfo(&req->url);
		resetStringInfo(&req->body);
		req->headers = NULL;
		req->http_status = 0;
		req->failed = false;
		req->refused = false;
		req->connected_any = false;
		req->error[0] = '\0';
		req->curl_error[0] = '\0';
		req->response[0] = '\0';
		req->response_len = 0;
		req->response_total = 0;
		req->retry_after_s = -1;
		req->duration_ms = 0;
		req->next_done = NULL;
		return req;
	}
	return NULL;
}

bool
webhooks_http_add_header(WebhooksRequest *req, const char *line)
{
	struct curl_slist *l = curl_slist_append(req->headers, line);

	if (l == NULL)
		return false;
	req->headers = l;
	return true;
}

static void
setopt(WebhooksRequest *req, CURLcode rc)
{
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not set up the request for delivery %lld", (long long) req->delivery_id),
				 errdetail_internal("%s", curl_easy_strerror(rc))));
}

/* Configure the request's easy handle and hand it to the multi handle. */
void
webhooks_http_start(WebhooksHttp *http, WebhooksRequest *req)
{
	CURL	   *easy = req->easy;

	curl_easy_reset(easy);
	setopt(req, curl_easy_setopt(easy, CURLOPT_URL, req->url.data));
	setopt(req, curl_easy_setopt(easy, CURLOPT_POST, 1L));
	setopt(req, curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.data));
	setopt(req, curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body.len));
	setopt(req, curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers));
	setopt(req, curl_easy_setopt(easy, CURLOPT_USERAGENT, "pg-webhooks/" WEBHOOKS_VERSION));
	/* signals belong to PostgreSQL; redirects are not followed; no proxies from the environment */
	setopt(req, curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L));
	setopt(req, curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L));
	setopt(req, curl_easy_setopt(easy, CURLOPT_PROXY, ""));
#if LIBCURL_VERSION_NUM >= 0x075500
	setopt(req, curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https"));
#else
	setopt(req, curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)));
#endif
	setopt(req, curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) webhooks_connect_timeout_ms));
	setopt(req, curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) webhooks_timeout_ms));
	setopt(req, curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L));
	setopt(req, curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L));
	if (webhooks_ca_file && webhooks_ca_file[0])
		setopt(req, curl_easy_setopt(easy, CURLOPT_CAINFO, webhooks_ca_file));
	setopt(req, curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_callback));
	setopt(req, curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req));
	setopt(req, curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback));
	setopt(req, curl_easy_setopt(easy, CURLOPT_WRITEDATA, req));
	setopt(req, curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_callback));
	setopt(req, curl_easy_setopt(easy, CURLOPT_HEADERDATA, req));
	setopt(req, curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->curl_error));
	setopt(req, curl_easy_setopt(easy, CURLOPT_PRIVATE, req));

	req->started_at = GetCurrentTimestamp();
	curl_check_multi(curl_multi_add_handle(http->multi, easy), "start a request");
	http->in_flight++;
}

/* ---------------------------------------------------------------------
 * Waiting and driving curl
 * ---------------------------------------------------------------------
 */

static uint32
wait_events_for(int what)
{
	switch (what)
	{
		case CURL_POLL_IN:
			return WL_SOCKET_READABLE;
		case CURL_POLL_OUT:
			return WL_SOCKET_WRITEABLE;
		default:
			return WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE;
	}
}

/* Bring the WaitEventSet in line with the sockets curl wants watched. */
static void
sync_wait_set(WebhooksHttp *http)
{
	int			i;

	if (http->sockets_dirty || http->wait_set == NULL)
	{
		if (http->wait_set)
			FreeWaitEventSet(http->wait_set);
		http->wait_set = CreateWaitEventSet(http->mcxt, http->max_sockets + 2);
		AddWaitEventToSet(http->wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(http->wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < http->nsockets; i++)
		{
			http->sockets[i].pos = AddWaitEventToSet(http->wait_set,
													 wait_events_for(http->sockets[i].what),
													 http->sockets[i].fd, NULL, NULL);
			http->sockets[i].changed = false;
		}
		http->sockets_dirty = false;
		return;
	}
	for (i = 0; i < http->nsockets; i++)
	{
		if (!http->sockets[i].changed)
			continue;
		ModifyWaitEvent(http->wait_set, http->sockets[i].pos,
						wait_events_for(http->sockets[i].what), NULL);
		http->sockets[i].changed = false;
	}
}

/* Text for a failed transfer: ours (address guard) or curl's. */
static void
describe_failure(WebhooksRequest *req, CURLcode rc)
{
	if (req->refused)
		return;					/* the guard wrote req->error */
	if (rc == CURLE_OUT_OF_MEMORY)
		snprintf(req->error, sizeof(req->error),
				 "the response could not be read: a header line over libcurl's limit, or out of memory");
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(req->error, sizeof(req->error), "timed out after %.0f ms: %s",
				 req->duration_ms, req->curl_error[0] ? req->curl_error : curl_easy_strerror(rc));
	else
		snprintf(req->error, sizeof(req->error), "%s",
				 req->curl_error[0] ? req->curl_error : curl_easy_strerror(rc));
}

/* Move finished transfers to the done list. */
static void
collect_finished(WebhooksHttp *http)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(http->multi, &left)) != NULL)
	{
		WebhooksRequest *req = NULL;
		CURLcode	rc = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &req->http_status);
		req->duration_ms = (double) (GetCurrentTimestamp() - req->started_at) / 1000.0;
		curl_multi_remove_handle(http->multi, msg->easy_handle);
		curl_slist_free_all(req->headers);
		req->headers = NULL;

		/* a body cut short after a complete status line still counts */
		if (rc == CURLE_WRITE_ERROR && req->http_status > 0)
			rc = CURLE_OK;
		req->failed = (rc != CURLE_OK);
		if (req->failed)
		{
			req->http_status = 0;
			describe_failure(req, rc);
		}
		http->in_flight--;
		if (http->done_tail)
			http->done_tail->next_done = req;
		else
			http->done_head = req;
		http->done_tail = req;
	}
}

/*
 * Wait up to timeout_ms for the latch, a socket or curl's timer, and let
 * curl make progress.  Returns true if the latch was set (the caller
 * resets it and services interrupts).  Finished requests are queued for
 * webhooks_http_next_done().
 */
bool
webhooks_http_wait(WebhooksHttp *http, long timeout_ms)
{
	int			nevents;
	int			i;
	int			running;
	bool		latch_set = false;
	bool		socket_ready = false;

	if (http->sockets_overflow)
		elog(WARNING, "webhooks: more sockets than expected; some requests failed");
	http->sockets_overflow = false;
	if (http->timer_set)
	{
		long		until_timer = (long) ((http->timer_deadline - GetCurrentTimestamp()) / 1000);

		timeout_ms = timeout_ms < 0 ? Max(until_timer, 0) : Min(timeout_ms, Max(until_timer, 0));
	}
	sync_wait_set(http);
	nevents = WaitEventSetWait(http->wait_set, timeout_ms, http->occurred,
							   http->max_sockets + 2, PG_WAIT_EXTENSION);
	for (i = 0; i < nevents; i++)
	{
		WaitEvent  *ev = &http->occurred[i];
		int			flags = 0;

		if (ev->events & WL_LATCH_SET)
		{
			latch_set = true;
			continue;
		}
		if (ev->events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (ev->events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags == 0)
			continue;
		socket_ready = true;
		curl_multi_socket_action(http->multi, ev->fd, flags, &running);
	}
	if (http->timer_set && GetCurrentTimestamp() >= http->timer_deadline)
	{
		http->timer_set = false;
		curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	else if (!socket_ready && !latch_set && http->in_flight > 0 && !http->timer_set)
		curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_finished(http);
	return latch_set;
}

/* The next finished request, oldest first, or NULL. */
WebhooksRequest *
webhooks_http_next_done(WebhooksHttp *http)
{
	WebhooksRequest *req = http->done_head;

	if (req)
	{
		http->done_head = req->next_done;
		if (http->done_head == NULL)
			http->done_tail = NULL;
		req->next_done = NULL;
	}
	return req;
}

void
webhooks_http_release(WebhooksHttp *http, WebhooksRequest *req)
{
	req->in_use = false;
}
