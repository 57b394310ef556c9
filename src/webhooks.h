/*
 * webhooks.h
 *     Declarations shared between the files of pg-webhooks.
 *
 * Each .c file owns one concern; this header is the boundary between them.
 * Every non-static symbol carries the webhooks_ prefix, since all loaded
 * extensions share one address space.
 */
#ifndef WEBHOOKS_H
#define WEBHOOKS_H

#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#define WEBHOOKS_SCHEMA       "webhooks"
#define WEBHOOKS_ANCHOR_TABLE "webhooks"	/* cache invalidations are sent on it */
#define WEBHOOKS_VERSION      "0.1.0"

/* Where an event belongs: a site or a content space. */
typedef enum WebhooksScope
{
	WEBHOOKS_SCOPE_UNKNOWN = -1,
	WEBHOOKS_SCOPE_SITE = 0,
	WEBHOOKS_SCOPE_SPACE = 1
} WebhooksScope;

/* One event on its way into the queue (see queue.c). */
typedef struct WebhooksEvent
{
	pg_uuid_t	id;
	const char *type;
	bool		has_site;
	int64		site_id;
	bool		has_space;
	int64		space_id;
	TimestampTz created_at;
	bool		test;
	int64	   *webhook_ids;	/* the matching webhooks */
	int			nwebhooks;
	StringInfo	payload;		/* the complete JSON body */
} WebhooksEvent;

/* The previous user and search_path, restored by webhooks_as_owner_end. */
typedef struct WebhooksOwnerState
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} WebhooksOwnerState;

/* settings.c: the webhooks.* GUCs */
#define WEBHOOKS_MAX_RETRIES  32
#define WEBHOOKS_MAX_NETWORKS 64

typedef struct WebhooksRetrySchedule
{
	int			nretries;
	int64		delays_ms[WEBHOOKS_MAX_RETRIES];
} WebhooksRetrySchedule;

typedef struct WebhooksNetwork
{
	int			family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int			bits;
} WebhooksNetwork;

typedef struct WebhooksNetworkList
{
	int			n;
	WebhooksNetwork nets[WEBHOOKS_MAX_NETWORKS];
} WebhooksNetworkList;

extern int	webhooks_max_connections;
extern int	webhooks_timeout_ms;
extern int	webhooks_connect_timeout_ms;
extern int	webhooks_batch_size;
extern int	webhooks_retention_s;
extern int	webhooks_secret_overlap_s;
extern int	webhooks_disable_after_s;
extern int	webhooks_disable_min_attempts;
extern int	webhooks_launcher_naptime_ms;
extern char *webhooks_ca_file;
extern WebhooksRetrySchedule *webhooks_retry_schedule;
extern WebhooksNetworkList *webhooks_allowed_networks;
extern void webhooks_settings_init(void);

/* subscriptions.c: per-backend cache of the switch, catalog and webhooks */
extern void webhooks_subscriptions_init(void);
extern bool webhooks_switch_on(void);
extern WebhooksScope webhooks_event_scope(const char *type);
extern int	webhooks_match(const char *type, WebhooksScope scope,
						   bool has_site, int64 site_id,
						   bool has_space, int64 space_id,
						   int64 **ids);
extern bool webhooks_type_wanted(const char *type);
extern Oid	webhooks_anchor_relid(void);
extern void webhooks_as_owner_begin(WebhooksOwnerState *state, bool pin_search_path);
extern void webhooks_as_owner_end(WebhooksOwnerState *state);
extern void webhooks_spi_select(const char *sql, int nargs, Oid *argtypes, Datum *args);

/* capture.c: the trigger and emit() */
extern void webhooks_capture_init(void);

/* How payload.c writes one column's value as JSON. */
typedef enum WebhooksJsonKind
{
	WEBHOOKS_JSON_STRING,		/* output function, quoted */
	WEBHOOKS_JSON_BOOL,
	WEBHOOKS_JSON_NUMBER,		/* unquoted unless NaN or infinite */
	WEBHOOKS_JSON_RAW,			/* json, jsonb: already JSON */
	WEBHOOKS_JSON_DATETIME,		/* ISO 8601, as to_json() writes it */
	WEBHOOKS_JSON_ARRAY,
	WEBHOOKS_JSON_COMPOSITE
} WebhooksJsonKind;

typedef struct WebhooksColumnOut
{
	char	   *key;			/* "name": already escaped */
	int			keylen;
	WebhooksJsonKind kind;
	Oid			typid;			/* base type, domains looked through */
	FmgrInfo	output;
} WebhooksColumnOut;

/* payload.c: the JSON envelope and its parts */
extern void webhooks_append_json_string(StringInfo buf, const char *str);
extern void webhooks_append_json_text(StringInfo buf, const char *str, int len);
extern void webhooks_column_out_init(WebhooksColumnOut *col, const char *name,
									 Oid typid, MemoryContext mcxt);
extern void webhooks_append_value(StringInfo buf, Datum value, bool isnull,
								  WebhooksColumnOut *col);
extern char *webhooks_value_text(Datum value, WebhooksColumnOut *col);
extern void webhooks_event_id_floor(TimestampTz ts, pg_uuid_t *id);
extern void webhooks_new_event_id(pg_uuid_t *id);
extern void webhooks_append_timestamp(StringInfo buf, TimestampTz ts);
extern void webhooks_append_envelope_head(StringInfo buf, const WebhooksEvent *ev);
extern void webhooks_append_envelope_tail(StringInfo buf, const WebhooksEvent *ev);

/* signature.c: Standard Webhooks secrets and signatures */
extern int	webhooks_secret_key(const char *secret, uint8 **key);
extern int	webhooks_secret_key_or_fail(const char *secret, uint8 **key);
extern char *webhooks_signature(const uint8 *key, int keylen, const char *id,
								int64 timestamp, const char *body, size_t bodylen);

/* One claimed delivery, as the worker sends it. */
typedef struct WebhooksClaim
{
	int64		delivery_id;
	int64		webhook_id;
	int			attempt;
	int64		inflight_key;	/* first attempt: first_delivery of its inflight_first_attempts row; 0: a retry */
	char	   *event_id;
	char	   *payload;
	bool		webhook_exists;
	bool		webhook_enabled;
	char	   *url;
	int			nheaders;
	char	  **headers;		/* "Name: value" */
	char	   *secret;
	char	   *previous_secret;	/* NULL unless within webhooks.secret_overlap */
	int64		timestamp;		/* webhook-timestamp of this attempt */
	char	   *signature;		/* the webhook-signature header line */
} WebhooksClaim;

/* What became of one claimed delivery. */
typedef struct WebhooksOutcome
{
	int64		delivery_id;
	int64		webhook_id;
	int			attempt;
	int64		inflight_key;	/* a first attempt (its delivery row is inserted), or 0 */
	const char *event_id;		/* for a first attempt */
	const char *status;			/* pending (retry), succeeded, failed, cancelled */
	int			http_status;	/* 0: none */
	const char *error;
	TimestampTz started_at;		/* 0: never sent */
	double		duration_ms;
	const char *response;
	TimestampTz next_at;		/* 0: unchanged */
} WebhooksOutcome;

/* queue.c: writing events, and the worker's claim/record/prune SQL */
extern void webhooks_enqueue(const WebhooksEvent *ev);
extern void webhooks_enqueue_buffered(const WebhooksEvent *ev);
extern uint64 webhooks_queue_recover(void);
extern int	webhooks_queue_dispatch(int limit, int lease_ms, int overlap_s,
									WebhooksClaim **claims, bool *more);
extern int	webhooks_queue_claim(int limit, int overlap_s, const int64 *in_flight, int nin_flight,
								 WebhooksClaim **claims);
extern void webhooks_queue_record(const WebhooksOutcome *outcomes, int n, const int64 *done, int ndone);
extern TimestampTz webhooks_queue_next_due(const int64 *in_flight, int nin_flight);
extern void webhooks_queue_maintain(void);

/* launcher.c: launcher, shared memory, waking workers */
extern void webhooks_launcher_init(void);
extern void webhooks_wake_at_commit(void);
extern bool webhooks_worker_attach(Oid dboid);
extern void webhooks_worker_exiting(bool no_extension);
extern void webhooks_worker_healthy(void);
extern PGDLLEXPORT void webhooks_launcher_main(Datum arg);

/* worker.c: the per-database delivery worker */
extern PGDLLEXPORT void webhooks_worker_main(Datum arg);

#endif							/* WEBHOOKS_H */
