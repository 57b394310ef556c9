/*
 * queue.c
 *     Writing events into webhooks.events, the queue the delivery worker
 *     reads.
 *
 * One row per captured change, whatever the number of webhooks that want
 * it (their ids go in webhook_ids), written in the transaction of the
 * change, so a rollback queues nothing and a commit loses nothing.  The
 * INSERT is planned once per backend and runs as the extension's owner.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "webhooks.h"

#define EVENT_INSERT_NARGS 8

static SPIPlanPtr insert_plan = NULL;

static SPIPlanPtr
prepare_insert(void)
{
	Oid			argtypes[EVENT_INSERT_NARGS] = {
		UUIDOID, TEXTOID, INT8OID, INT8OID, INT8ARRAYOID, JSONOID, BOOLOID, TIMESTAMPTZOID
	};
	SPIPlanPtr	plan;

	plan = SPI_prepare("INSERT INTO webhooks.events "
					   "(id, type, site_id, space_id, webhook_ids, payload, test, created_at) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
					   EVENT_INSERT_NARGS, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the event insert: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the event insert plan");
	return plan;
}

static Datum
webhook_ids_array(const WebhooksEvent *ev)
{
	Datum	   *elems = palloc(sizeof(Datum) * ev->nwebhooks);
	int			i;

	for (i = 0; i < ev->nwebhooks; i++)
		elems[i] = Int64GetDatum(ev->webhook_ids[i]);
	return PointerGetDatum(construct_array(elems, ev->nwebhooks, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Queue the event in the current transaction. */
void
webhooks_enqueue(const WebhooksEvent *ev)
{
	WebhooksOwnerState owner;
	Datum		values[EVENT_INSERT_NARGS];
	char		nulls[EVENT_INSERT_NARGS];
	int			rc;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(&ev->id);
	values[1] = CStringGetTextDatum(ev->type);
	values[2] = Int64GetDatum(ev->site_id);
	nulls[2] = ev->has_site ? ' ' : 'n';
	values[3] = Int64GetDatum(ev->space_id);
	nulls[3] = ev->has_space ? ' ' : 'n';
	values[4] = webhook_ids_array(ev);
	/* json is stored as its text; the payload was built as valid JSON */
	values[5] = PointerGetDatum(cstring_to_text_with_len(ev->payload->data, ev->payload->len));
	values[6] = BoolGetDatum(ev->test);
	values[7] = TimestampTzGetDatum(ev->created_at);

	webhooks_as_owner_begin(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (insert_plan == NULL)
		insert_plan = prepare_insert();
	rc = SPI_execute_plan(insert_plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not queue event: %s", SPI_result_code_string(rc));
	SPI_finish();
	webhooks_as_owner_end(&owner);
	webhooks_wake_at_commit();
}

/* ---------------------------------------------------------------------
 * The worker's side of the queue.  Every function below runs inside the
 * worker's short transaction, with SPI connected by the caller; none is
 * ever called while a request is waiting on the network.
 * ---------------------------------------------------------------------
 */

/* Run a statement; like webhooks_spi_select, stays in the caller's context. */
static void
run(const char *sql, int nargs, Oid *argtypes, Datum *args, const char *nulls, int expected)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 0);

	MemoryContextSwitchTo(caller);
	if (rc != expected)
		elog(ERROR, "webhooks worker query failed (%s): %.60s...", SPI_result_code_string(rc), sql);
}

/*
 * After a restart, deliveries left "sending" by the previous worker were
 * interrupted: record that, and send them again now (at-least-once, with
 * the same webhook-id).
 */
uint64
webhooks_queue_recover(void)
{
	run("WITH r AS (UPDATE webhooks.deliveries SET status = 'pending', next_attempt_at = now() "
		"           WHERE status = 'sending' RETURNING id, attempts) "
		"INSERT INTO webhooks.attempts (delivery_id, attempt, started_at, error) "
		"SELECT id, attempts, now(), 'interrupted: the worker stopped while this attempt was in flight' "
		"FROM r", 0, NULL, NULL, NULL, SPI_OK_INSERT);
	return SPI_processed;
}

/* Turn queued events into one delivery per matching webhook. */
uint64
webhooks_queue_fan_out(int limit)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(limit)};

	run("WITH ev AS (SELECT id, webhook_ids FROM webhooks.events "
		"            WHERE dispatched_at IS NULL ORDER BY created_at LIMIT $1 "
		"            FOR UPDATE SKIP LOCKED), "
		"     done AS (UPDATE webhooks.events e SET dispatched_at = now() FROM ev WHERE e.id = ev.id) "
		"INSERT INTO webhooks.deliveries (event_id, webhook_id) "
		"SELECT ev.id, w.id FROM ev, unnest(ev.webhook_ids) WITH ORDINALITY AS w(id, n) "
		"ORDER BY ev.id, w.n",
		1, argtypes, args, NULL, SPI_OK_INSERT);
	return SPI_processed;
}

/* SPI_getvalue copies into the current memory context; NULL stays NULL. */
static char *
copy_text(HeapTuple tuple, TupleDesc desc, int attno)
{
	return SPI_getvalue(tuple, desc, attno);
}

/*
 * Claim up to limit due deliveries: mark them sending with a lease of
 * lease_ms and return what is needed to send them, in the caller's memory
 * context.
 */
int
webhooks_queue_claim(int limit, int lease_ms, int overlap_s, WebhooksClaim **claims)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, INT4OID};
	Datum		args[3] = {Int32GetDatum(limit), Int32GetDatum(lease_ms), Int32GetDatum(overlap_s)};
	uint64		i;
	int			n;

	run("WITH due AS (SELECT id FROM webhooks.deliveries "
		"             WHERE status IN ('pending', 'sending') AND next_attempt_at <= now() "
		"             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED), "
		"     claimed AS (UPDATE webhooks.deliveries d "
		"                 SET status = 'sending', attempts = d.attempts + 1, "
		"                     next_attempt_at = now() + $2 * interval '1 millisecond', "
		"                     last_attempt_at = now() "
		"                 FROM due WHERE d.id = due.id "
		"                 RETURNING d.id, d.event_id, d.webhook_id, d.attempts) "
		"SELECT c.id, c.webhook_id, c.attempts, c.event_id::text, e.payload::text, "
		"       w.id IS NOT NULL, coalesce(w.enabled, false), w.url, "
		"       ARRAY(SELECT h.key || ': ' || h.value FROM jsonb_each_text(w.headers) h), "
		"       w.secret, "
		"       CASE WHEN w.secret_rotated_at > now() - $3 * interval '1 second' "
		"            THEN w.previous_secret END "
		"FROM claimed c JOIN webhooks.events e ON e.id = c.event_id "
		"LEFT JOIN webhooks.webhooks w ON w.id = c.webhook_id",
		3, argtypes, args, NULL, SPI_OK_SELECT);

	n = (int) SPI_processed;
	*claims = palloc0(sizeof(WebhooksClaim) * Max(n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		WebhooksClaim *c = &(*claims)[i];
		bool		isnull;
		Datum		headers;

		c->delivery_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		c->webhook_id = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		c->attempt = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
		c->event_id = copy_text(tuple, desc, 4);
		c->payload = copy_text(tuple, desc, 5);
		c->webhook_exists = DatumGetBool(SPI_getbinval(tuple, desc, 6, &isnull));
		c->webhook_enabled = DatumGetBool(SPI_getbinval(tuple, desc, 7, &isnull));
		c->url = copy_text(tuple, desc, 8);
		headers = SPI_getbinval(tuple, desc, 9, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;
			int			j;

			deconstruct_array(DatumGetArrayTypeP(headers), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &c->nheaders);
			c->headers = palloc(sizeof(char *) * Max(c->nheaders, 1));
			for (j = 0; j < c->nheaders; j++)
				c->headers[j] = TextDatumGetCString(elems[j]);
		}
		c->secret = copy_text(tuple, desc, 10);
		c->previous_secret = copy_text(tuple, desc, 11);
	}
	return n;
}

/* A one-dimensional array with NULLs where isnull says so. */
static Datum
make_array(Datum *elems, bool *isnull, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, isnull, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

/*
 * Record a batch of outcomes: one attempt row each (unless the delivery
 * was cancelled before being sent), the delivery's new state, each
 * webhook's health, and the webhooks that answered 410 Gone disabled.
 */
void
webhooks_queue_record(const WebhooksOutcome *outcomes, int n)
{
	Datum	   *delivery = palloc(sizeof(Datum) * n);
	Datum	   *webhook = palloc(sizeof(Datum) * n);
	Datum	   *attempt = palloc(sizeof(Datum) * n);
	Datum	   *status = palloc(sizeof(Datum) * n);
	Datum	   *http_status = palloc(sizeof(Datum) * n);
	Datum	   *error = palloc(sizeof(Datum) * n);
	Datum	   *started = palloc(sizeof(Datum) * n);
	Datum	   *duration = palloc(sizeof(Datum) * n);
	Datum	   *response = palloc(sizeof(Datum) * n);
	Datum	   *next_at = palloc(sizeof(Datum) * n);
	bool	   *no = palloc0(sizeof(bool) * n);
	bool	   *null_status = palloc(sizeof(bool) * n);
	bool	   *null_error = palloc(sizeof(bool) * n);
	bool	   *null_started = palloc(sizeof(bool) * n);
	bool	   *null_response = palloc(sizeof(bool) * n);
	bool	   *null_next = palloc(sizeof(bool) * n);
	Oid			argtypes[10] = {INT8ARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TEXTARRAYOID, TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[10];
	int			i;

	for (i = 0; i < n; i++)
	{
		const WebhooksOutcome *o = &outcomes[i];

		delivery[i] = Int64GetDatum(o->delivery_id);
		webhook[i] = Int64GetDatum(o->webhook_id);
		attempt[i] = Int32GetDatum(o->attempt);
		status[i] = CStringGetTextDatum(o->status);
		http_status[i] = Int32GetDatum(o->http_status);
		null_status[i] = o->http_status == 0;
		error[i] = o->error ? CStringGetTextDatum(o->error) : (Datum) 0;
		null_error[i] = o->error == NULL;
		started[i] = TimestampTzGetDatum(o->started_at);
		null_started[i] = o->started_at == 0;
		duration[i] = Float8GetDatum(o->duration_ms);
		response[i] = o->response ? CStringGetTextDatum(o->response) : (Datum) 0;
		null_response[i] = o->response == NULL;
		next_at[i] = TimestampTzGetDatum(o->next_at);
		null_next[i] = o->next_at == 0;
	}
	args[0] = make_array(delivery, no, n, INT8OID);
	args[1] = make_array(webhook, no, n, INT8OID);
	args[2] = make_array(attempt, no, n, INT4OID);
	args[3] = make_array(status, no, n, TEXTOID);
	args[4] = make_array(http_status, null_status, n, INT4OID);
	args[5] = make_array(error, null_error, n, TEXTOID);
	args[6] = make_array(started, null_started, n, TIMESTAMPTZOID);
	args[7] = make_array(duration, null_started, n, FLOAT8OID);
	args[8] = make_array(response, null_response, n, TEXTOID);
	args[9] = make_array(next_at, null_next, n, TIMESTAMPTZOID);

	run("WITH r AS (SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
		"           AS r(delivery_id, webhook_id, attempt, status, http_status, error, "
		"                started_at, duration_ms, response, next_at)), "
		"     a AS (INSERT INTO webhooks.attempts "
		"             (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) "
		"           SELECT delivery_id, attempt, started_at, duration_ms, http_status, error, response "
		"           FROM r WHERE started_at IS NOT NULL ORDER BY delivery_id) "
		"UPDATE webhooks.deliveries d SET status = r.status, "
		"       attempts = CASE WHEN r.started_at IS NULL THEN d.attempts - 1 ELSE d.attempts END, "
		"       next_attempt_at = coalesce(r.next_at, d.next_attempt_at), "
		"       last_status = r.http_status, last_error = r.error, "
		"       finished_at = CASE WHEN r.status IN ('succeeded', 'failed', 'cancelled') THEN now() END "
		"FROM r WHERE d.id = r.delivery_id",
		10, argtypes, args, NULL, SPI_OK_UPDATE);

	/* health: the last success, and how long and how often it failed since */
	run("WITH r AS (SELECT * FROM unnest($2, $5, $6, $7) AS r(webhook_id, http_status, error, at) "
		"           WHERE at IS NOT NULL), "
		"     ok AS (SELECT webhook_id, max(at) AS last_ok FROM r "
		"            WHERE http_status BETWEEN 200 AND 299 GROUP BY webhook_id), "
		"     agg AS (SELECT r.webhook_id, ok.last_ok, "
		"                    max(r.at) FILTER (WHERE r.http_status IS NULL OR r.http_status NOT BETWEEN 200 AND 299) AS last_fail, "
		"                    min(r.at) FILTER (WHERE (r.http_status IS NULL OR r.http_status NOT BETWEEN 200 AND 299) "
		"                                        AND r.at > coalesce(ok.last_ok, '-infinity')) AS first_fail, "
		"                    count(*) FILTER (WHERE (r.http_status IS NULL OR r.http_status NOT BETWEEN 200 AND 299) "
		"                                       AND r.at > coalesce(ok.last_ok, '-infinity')) AS fails, "
		"                    (array_agg(r.http_status ORDER BY r.at DESC))[1] AS last_status, "
		"                    (array_agg(r.error ORDER BY r.at DESC))[1] AS last_error "
		"             FROM r LEFT JOIN ok USING (webhook_id) GROUP BY r.webhook_id, ok.last_ok) "
		"INSERT INTO webhooks.webhook_health AS h (webhook_id, last_success_at, last_failure_at, "
		"       failing_since, consecutive_failures, last_status, last_error) "
		"SELECT webhook_id, last_ok, last_fail, first_fail, fails, last_status, last_error FROM agg "
		"ON CONFLICT (webhook_id) DO UPDATE SET "
		"  last_success_at = coalesce(excluded.last_success_at, h.last_success_at), "
		"  last_failure_at = coalesce(excluded.last_failure_at, h.last_failure_at), "
		"  failing_since = CASE WHEN excluded.last_success_at IS NOT NULL THEN excluded.failing_since "
		"                       ELSE coalesce(h.failing_since, excluded.failing_since) END, "
		"  consecutive_failures = CASE WHEN excluded.last_success_at IS NOT NULL THEN excluded.consecutive_failures "
		"                              ELSE h.consecutive_failures + excluded.consecutive_failures END, "
		"  last_status = excluded.last_status, last_error = excluded.last_error",
		10, argtypes, args, NULL, SPI_OK_INSERT);

	/* 410 Gone: the receiver says the endpoint is no more */
	run("UPDATE webhooks.webhooks SET enabled = false, disabled_at = now(), "
		"       disabled_reason = 'disabled by pg-webhooks: the endpoint answered 410 Gone' "
		"WHERE enabled AND id IN (SELECT w FROM unnest($2, $5) AS r(w, s) WHERE s = 410)",
		10, argtypes, args, NULL, SPI_OK_UPDATE);
}

/* When the next pending delivery is due (0 if none is pending). */
TimestampTz
webhooks_queue_next_due(void)
{
	bool		isnull;
	Datum		d;

	run("SELECT min(next_attempt_at) FROM webhooks.deliveries "
		"WHERE status IN ('pending', 'sending')", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/* Are events waiting to be fanned out? */
bool
webhooks_queue_has_undispatched(void)
{
	run("SELECT 1 FROM webhooks.events WHERE dispatched_at IS NULL LIMIT 1",
		0, NULL, NULL, NULL, SPI_OK_SELECT);
	return SPI_processed > 0;
}

#define PRUNE_BATCH 5000
#define PRUNE_MAX_BATCHES 20

/*
 * Housekeeping: disable webhooks that have failed for too long, and prune
 * finished deliveries (with their attempts) and their events after
 * webhooks.retention, in bounded batches.
 */
void
webhooks_queue_maintain(void)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	int			i;

	args[0] = Int32GetDatum(webhooks_disable_after_s);
	args[1] = Int32GetDatum(webhooks_disable_min_attempts);
	run("UPDATE webhooks.webhooks w SET enabled = false, disabled_at = now(), "
		"       disabled_reason = format('disabled by pg-webhooks: every delivery failed since %s "
		"(%s failed attempts); last error: %s', h.failing_since, h.consecutive_failures, "
		"coalesce(h.last_error, 'HTTP ' || h.last_status)) "
		"FROM webhooks.webhook_health h "
		"WHERE h.webhook_id = w.id AND w.enabled "
		"  AND h.failing_since <= now() - $1 * interval '1 second' "
		"  AND h.consecutive_failures >= $2",
		2, argtypes, args, NULL, SPI_OK_UPDATE);
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("pg-webhooks disabled " UINT64_FORMAT " webhook(s) whose deliveries kept failing",
						SPI_processed)));

	args[0] = Int32GetDatum(webhooks_retention_s);
	args[1] = Int32GetDatum(PRUNE_BATCH);
	for (i = 0; i < PRUNE_MAX_BATCHES; i++)
	{
		run("WITH old AS (SELECT id FROM webhooks.deliveries "
			"             WHERE finished_at < now() - $1 * interval '1 second' "
			"             ORDER BY finished_at LIMIT $2), "
			"     a AS (DELETE FROM webhooks.attempts WHERE delivery_id IN (SELECT id FROM old)) "
			"DELETE FROM webhooks.deliveries WHERE id IN (SELECT id FROM old)",
			2, argtypes, args, NULL, SPI_OK_DELETE);
		if (SPI_processed < PRUNE_BATCH)
			break;
	}
	for (i = 0; i < PRUNE_MAX_BATCHES; i++)
	{
		run("DELETE FROM webhooks.events e WHERE e.id IN ( "
			"    SELECT o.id FROM webhooks.events o "
			"    WHERE o.id < webhooks._event_id_floor(now() - $1 * interval '1 second') "
			"      AND o.dispatched_at IS NOT NULL "
			"      AND NOT EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.event_id = o.id) "
			"    ORDER BY o.id LIMIT $2)",
			2, argtypes, args, NULL, SPI_OK_DELETE);
		if (SPI_processed < PRUNE_BATCH)
			break;
	}
}
