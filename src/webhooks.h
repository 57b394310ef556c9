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

/* subscriptions.c: per-backend cache of the switch, catalog and webhooks */
extern void webhooks_subscriptions_init(void);
extern bool webhooks_switch_on(void);
extern WebhooksScope webhooks_event_scope(const char *type);
extern int	webhooks_match(const char *type, WebhooksScope scope,
						   bool has_site, int64 site_id,
						   bool has_space, int64 space_id,
						   int64 **ids);
extern Oid	webhooks_anchor_relid(void);
extern void webhooks_as_owner_begin(WebhooksOwnerState *state);
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
	WebhooksJsonKind kind;
	Oid			typid;			/* base type, domains looked through */
	FmgrInfo	output;
} WebhooksColumnOut;

/* payload.c: the JSON envelope and its parts */
extern void webhooks_column_out_init(WebhooksColumnOut *col, const char *name,
									 Oid typid, MemoryContext mcxt);
extern void webhooks_append_value(StringInfo buf, Datum value, bool isnull,
								  WebhooksColumnOut *col);
extern char *webhooks_value_text(Datum value, WebhooksColumnOut *col);
extern void webhooks_new_event_id(pg_uuid_t *id);
extern void webhooks_append_timestamp(StringInfo buf, TimestampTz ts);
extern void webhooks_append_envelope_head(StringInfo buf, const WebhooksEvent *ev);
extern void webhooks_append_envelope_tail(StringInfo buf, const WebhooksEvent *ev);

/* signature.c: Standard Webhooks secrets and signatures */
extern int	webhooks_secret_key(const char *secret, uint8 **key);
extern char *webhooks_signature(const uint8 *key, int keylen, const char *id,
								int64 timestamp, const char *body, size_t bodylen);

/* queue.c: writing events */
extern void webhooks_enqueue(const WebhooksEvent *ev);

#endif							/* WEBHOOKS_H */
