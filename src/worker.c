/*
 * worker.c
 *     The delivery worker of one database: claims due deliveries, POSTs
 *     them signed, records what happened, retries on schedule.
 *
 * The loop is PostgreSQL's own background-worker loop (see worker_spi),
 * with the network kept out of every transaction:
 *
 *   round (one short transaction):
 *     record the outcomes collected since the last round (attempt rows,
 *     delivery rows: inserted for a first attempt, updated for a retry;
 *     webhook health, 410 → webhook disabled);
 *     claim due retries (read, not updated: the retries in flight are kept
 *     here and left out of the next claims), then dispatch new events: move
 *     them to event_store and claim one first attempt per matching webhook,
 *     their future delivery ids kept in an inflight_first_attempts row so
 *     that a crash sends them again; every few seconds, housekeeping
 *     (recover in-flight rows whose lease ran out, disable webhooks that
 *     keep failing, prune after webhooks.retention)
 *   then, with no transaction open: start the claimed requests and wait on
 *     the latch, curl's sockets and timers together (http.c), collecting
 *     outcomes as requests finish.
 *
 * A round runs when a commit queued events (the committing backend sets
 * our latch), when outcomes are waiting to be recorded, when a retry falls
 * due, and for housekeeping.  An error in a round is reported, its
 * transaction aborted, and the worker backs off and goes on; what was
 * claimed but not recorded is sent again: a retry at once (it is still
 * due), a first attempt when its in-flight row's lease runs out.
 */
#include "postgres.h"

#include <signal.h>
#include <time.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "http.h"
#include "webhooks.h"

#define MAINTENANCE_INTERVAL_MS 2000
#define RECORD_DELAY_MS 20		/* outcomes wait at most this long for company */
#define LEASE_MARGIN_MS 30000	/* a claimed delivery is resent this long after its timeout */
#define ERROR_BACKOFF_MS 1000
#define HEALTHY_AFTER_MS 60000
#define QUEUE_WAVES 4			/* claims queued: at most this many times the request slots */

/* The claims of one round, started as request slots free up. */
typedef struct ClaimBatch
{
	MemoryContext cxt;			/* the claims and their strings */
	WebhooksClaim *claims;
	int			n;
	int			next;			/* first not yet started */
} ClaimBatch;

/*
 * A row of webhooks.inflight_first_attempts written by this worker: how
 * many of its first attempts have no recorded outcome yet.
 */
typedef struct InflightRow
{
	int64		key;			/* its first_delivery */
	int			remaining;
	TimestampTz leased_until;	/* after this, housekeeping recovers it */
} InflightRow;

typedef struct Worker
{
	WebhooksHttp *http;
	MemoryContext loop_cxt;
	MemoryContext round_cxt;	/* scratch memory of the current round */
	List	   *batches;		/* ClaimBatch *, oldest first */
	int			queued;			/* claims not yet started */
	MemoryContext new_batch_cxt;	/* being filled by a round, if any */
	MemoryContext outcome_cxt;	/* outcomes waiting to be recorded */
	WebhooksOutcome *outcomes;
	int			noutcomes;
	int			max_outcomes;
	bool		work_signalled; /* new events or deliveries may be waiting */
	TimestampTz next_due;		/* earliest pending delivery, 0 if none */
	TimestampTz last_round;
	TimestampTz last_maintenance;
	TimestampTz started_at;
	bool		reported_healthy;
	bool		resize_pending; /* webhooks.max_connections grew: new pool when idle */
	bool		events_waiting; /* the last dispatch left new events behind */
	InflightRow *inflight;		/* in loop_cxt */
	int			ninflight;
	int			max_inflight;
	InflightRow new_inflight;	/* written by the current round (key 0: none) */
	int64	   *retries;		/* deliveries (not first attempts) claimed, not yet recorded */
	int			nretries;
	int			max_retries;
	int			nretries_before_round;	/* to forget a failed round's claims */
	ResourceOwner owner;		/* for signing outside the rounds' transactions */
} Worker;

static volatile sig_atomic_t got_sigterm = false;
static Worker *worker = NULL;
static char database_name[NAMEDATALEN] = "?";

static void
handle_sigterm(SIGNAL_ARGS)
{
	got_sigterm = true;
	die(postgres_signal_arg);
}

/* Runs first at exit: tell the launcher whether this was asked for. */
static void
on_worker_exit(int code, Datum arg)
{
	if (got_sigterm)
		webhooks_worker_exiting(false);
	if (worker && worker->http)
	{
		webhooks_http_destroy(worker->http);
		worker->http = NULL;
	}
}

static long
ms_between(TimestampTz from, TimestampTz to)
{
	return (long) ((to - from) / 1000);
}

/* ---------------------------------------------------------------------
 * Outcomes
 * ---------------------------------------------------------------------
 */

/* Text fit for a text column: no NUL bytes, valid in the database encoding. */
static char *
clean_text(const char *s, size_t len)
{
	StringInfoData out;
	size_t		i = 0;
	int			encoding = GetDatabaseEncoding();

	initStringInfo(&out);
	while (i < len)
	{
		int			l = (s[i] == '\0') ? -1 :
			pg_encoding_verifymbchar(encoding, s + i, (int) (len - i));

		if (l <= 0)
		{
			appendStringInfoChar(&out, '?');
			i++;
			continue;
		}
		appendBinaryStringInfo(&out, s + i, l);
		i += l;
	}
	return out.data;
}

static WebhooksOutcome *
new_outcome(int64 delivery_id, int64 webhook_id, int attempt, int64 inflight_key,
			const char *event_id)
{
	WebhooksOutcome *o;

	if (worker->noutcomes >= worker->max_outcomes)
	{
		worker->max_outcomes *= 2;
		worker->outcomes = repalloc(worker->outcomes, sizeof(WebhooksOutcome) * worker->max_outcomes);
	}
	o = &worker->outcomes[worker->noutcomes++];
	memset(o, 0, sizeof(*o));
	o->delivery_id = delivery_id;
	o->webhook_id = webhook_id;
	o->attempt = attempt;
	o->inflight_key = inflight_key;
	o->event_id = inflight_key != 0 ? pstrdup(event_id) : NULL;
	return o;
}

/* The delay before the retry after this attempt, or -1: no retries left. */
static int64
retry_delay_ms(int attempt, long retry_after_s, int http_status)
{
	WebhooksRetrySchedule *schedule = webhooks_retry_schedule;
	int64		delay;

	if (schedule == NULL || attempt > schedule->nretries)
		return -1;
	delay = schedule->delays_ms[attempt - 1];
	/* ±10% so that endpoints coming back are not hit by a synchronized wave */
	delay += (int64) ((double) delay * ((double) random() / (double) 0x7FFFFFFF - 0.5) * 0.2);
	if ((http_status == 429 || http_status == 503) && retry_after_s >= 0)
		delay = Max(delay, (int64) Min(retry_after_s, 86400L) * 1000);
	return delay;
}

/* Turn a finished request into an outcome to record. */
static void
request_finished(WebhooksRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(worker->outcome_cxt);
	WebhooksOutcome *o = new_outcome(req->delivery_id, req->webhook_id, req->attempt,
									 req->inflight_key, req->event_id);
	int64		delay;

	o->started_at = req->started_at;
	o->duration_ms = req->duration_ms;
	o->http_status = (int) req->http_status;
	if (req->response_len > 0)
		o->response = clean_text(req->response, req->response_len);
	if (!req->failed && req->http_status >= 200 && req->http_status < 300)
		o->status = "succeeded";
	else if (req->http_status == 410)
	{
		o->status = "failed";
		o->error = "HTTP 410 Gone: the webhook is disabled";
	}
	else
	{
		o->error = req->failed ? clean_text(req->error, strlen(req->error))
			: psprintf("HTTP %ld", req->http_status);
		delay = retry_delay_ms(req->attempt, req->retry_after_s, o->http_status);
		if (delay < 0)
		{
			o->status = "failed";
			o->error = psprintf("%s (no retries left after %d attempts)", o->error, req->attempt);
		}
		else
		{
			o->status = "pending";
			o->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
		}
	}
	MemoryContextSwitchTo(old);
	webhooks_http_release(worker->http, req);
}

/* A claimed delivery whose webhook is gone or off is not sent. */
static void
cancel_claim(const WebhooksClaim *c)
{
	MemoryContext old = MemoryContextSwitchTo(worker->outcome_cxt);
	WebhooksOutcome *o = new_outcome(c->delivery_id, c->webhook_id, c->attempt,
									 c->inflight_key, c->event_id);

	o->status = "cancelled";
	o->error = c->webhook_exists ? "not sent: the webhook is disabled"
		: "not sent: the webhook was deleted";
	MemoryContextSwitchTo(old);
}

/* ---------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------
 */

/*
 * "v1,<sig>" or, during a rotation, "v1,<new> v1,<previous>".  A current
 * secret that cannot be decoded fails the attempt (an error); a previous
 * one that cannot be decoded is left out, so that mending a corrupted
 * secret with rotate_secret() does not keep failing for the overlap.
 */
static char *
signature_header(const WebhooksClaim *c, int64 timestamp)
{
	uint8	   *key;
	int			keylen = webhooks_secret_key(c->secret, &key);
	char	   *sig = webhooks_signature(key, keylen, c->event_id, timestamp,
										 c->payload, strlen(c->payload));

	if (c->previous_secret)
	{
		keylen = webhooks_secret_key_or_fail(c->previous_secret, &key);
		if (keylen > 0)
			sig = psprintf("%s %s", sig, webhooks_signature(key, keylen, c->event_id, timestamp,
															c->payload, strlen(c->payload)));
	}
	return psprintf("webhook-signature: %s", sig);
}

/*
 * Sign a claim just before its request starts, so webhook-timestamp is the
 * time of the attempt.  PostgreSQL's HMAC may use OpenSSL, whose contexts
 * belong to a resource owner: outside a transaction, the worker's own.
 */
static void
sign_claim(WebhooksClaim *c)
{
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = worker->owner;
	PG_TRY();
	{
		c->timestamp = (int64) time(NULL);
		c->signature = signature_header(c, c->timestamp);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
}

static void
start_request(const WebhooksClaim *c)
{
	WebhooksRequest *req = webhooks_http_new_request(worker->http);
	bool		ok;
	int			i;

	Assert(req != NULL);
	req->delivery_id = c->delivery_id;
	req->inflight_key = c->inflight_key;
	strlcpy(req->event_id, c->event_id, sizeof(req->event_id));
	req->webhook_id = c->webhook_id;
	req->attempt = c->attempt;
	appendStringInfoString(&req->url, c->url);
	appendStringInfoString(&req->body, c->payload);

	ok = webhooks_http_add_header(req, "Content-Type: application/json") &&
		webhooks_http_add_header(req, psprintf("webhook-id: %s", c->event_id)) &&
		webhooks_http_add_header(req, psprintf("webhook-timestamp: " INT64_FORMAT, c->timestamp)) &&
		webhooks_http_add_header(req, c->signature) &&
		/* no "Expect: 100-continue" round trip for bodies over 1 KB */
		webhooks_http_add_header(req, "Expect:");
	for (i = 0; ok && i < c->nheaders; i++)
		ok = webhooks_http_add_header(req, c->headers[i]);
	if (!ok)
	{
		/* out of memory in curl: record a failed attempt, retried later */
		req->started_at = GetCurrentTimestamp();
		req->failed = true;
		strlcpy(req->error, "could not build the request headers (out of memory)", sizeof(req->error));
		request_finished(req);
		return;
	}
	webhooks_http_start(worker->http, req);
}

/* ---------------------------------------------------------------------
 * Rounds
 * ---------------------------------------------------------------------
 */

static bool
extension_present(void)
{
	return OidIsValid(get_extension_oid("webhooks", true));
}

static void
exit_without_extension(void)
{
	ereport(LOG,
			(errmsg("pg-webhooks worker for database \"%s\" is stopping: the extension is not installed",
					database_name)));
	webhooks_worker_exiting(true);
	proc_exit(0);
}

/* Request slots in use at most: the pool, or fewer after a reload. */
static int
request_slots(void)
{
	return Min(webhooks_http_capacity(worker->http), webhooks_max_connections);
}

/* ---------------------------------------------------------------------
 * First attempts in flight (rows of webhooks.inflight_first_attempts)
 * ---------------------------------------------------------------------
 */

/* Outcomes in this batch of the first attempts of row key. */
static int
outcomes_of_row(int64 key)
{
	int			i,
				n = 0;

	for (i = 0; i < worker->noutcomes; i++)
		if (worker->outcomes[i].inflight_key == key)
			n++;
	return n;
}

/* The rows whose last outcome is in the batch about to be recorded. */
static int64 *
inflight_rows_done(int *ndone)
{
	int64	   *done = palloc(sizeof(int64) * Max(worker->ninflight, 1));
	int			i;

	*ndone = 0;
	for (i = 0; i < worker->ninflight; i++)
		if (outcomes_of_row(worker->inflight[i].key) >= worker->inflight[i].remaining)
			done[(*ndone)++] = worker->inflight[i].key;
	return done;
}

/*
 * The batch is recorded (committed): count its first attempts off their
 * rows, and forget the rows that are done, or whose lease ran out (the
 * housekeeping recovers those).
 */
static void
inflight_recorded(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i,
				kept = 0;

	for (i = 0; i < worker->ninflight; i++)
	{
		InflightRow *row = &worker->inflight[i];

		row->remaining -= outcomes_of_row(row->key);
		if (row->remaining > 0 && now < row->leased_until)
			worker->inflight[kept++] = *row;
	}
	worker->ninflight = kept;
}

/* The round that wrote a row committed: its first attempts are to be counted off. */
static void
inflight_add(const InflightRow *row)
{
	if (worker->ninflight >= worker->max_inflight)
	{
		worker->max_inflight *= 2;
		worker->inflight = repalloc(worker->inflight, sizeof(InflightRow) * worker->max_inflight);
	}
	worker->inflight[worker->ninflight++] = *row;
}

/*
 * Retries in flight: the claim only reads due deliveries, so the ones
 * claimed and not yet recorded are remembered here and left out of the
 * next claims.
 */
static void
retries_add(const WebhooksClaim *claims, int n)
{
	int			i;

	if (worker->nretries + n > worker->max_retries)
	{
		worker->max_retries = Max(worker->max_retries * 2, worker->nretries + n);
		worker->retries = repalloc(worker->retries, sizeof(int64) * worker->max_retries);
	}
	for (i = 0; i < n; i++)
		worker->retries[worker->nretries++] = claims[i].delivery_id;
}

/* Forget the retries among the outcomes (recorded, or dropped: to be claimed again). */
static void
retries_done(void)
{
	int			i,
				j,
				kept = 0;

	for (i = 0; i < worker->nretries; i++)
	{
		bool		done = false;

		for (j = 0; j < worker->noutcomes && !done; j++)
			done = worker->outcomes[j].inflight_key == 0 &&
				worker->outcomes[j].delivery_id == worker->retries[i];
		if (!done)
			worker->retries[kept++] = worker->retries[i];
	}
	worker->nretries = kept;
}

/* A short transaction of the worker's, with a snapshot, shown in pg_stat_activity. */
static void
begin_transaction(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* ... committed; back in the loop's memory context, idle. */
static void
commit_transaction(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(worker->loop_cxt);
}

/*
 * One transaction: record, fan out, claim, maybe housekeeping.  The claims
 * become a new batch, started once the transaction has committed.
 *
 * Claims are queued ahead of the free request slots (up to QUEUE_WAVES
 * times their number) so that a slot that frees up is refilled at once,
 * without a round; their lease covers the waves ahead of them.
 */
static void
run_round(bool maintenance)
{
	int			capacity = request_slots();
	int			limit = Min(capacity * QUEUE_WAVES - worker->queued, webhooks_batch_size);
	int			lease_ms = webhooks_timeout_ms * (QUEUE_WAVES + 1) + LEASE_MARGIN_MS;
	WebhooksClaim *claims = NULL;
	int			nclaims = 0;
	bool		present;

	MemoryContextReset(worker->round_cxt);
	MemoryContextSwitchTo(worker->round_cxt);
	worker->nretries_before_round = worker->nretries;
	begin_transaction("pg-webhooks: recording and claiming deliveries");

	present = extension_present();
	if (present)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		MemoryContextSwitchTo(worker->round_cxt);
		if (worker->noutcomes > 0)
		{
			int			ndone;
			int64	   *done = inflight_rows_done(&ndone);

			webhooks_queue_record(worker->outcomes, worker->noutcomes, done, ndone);
		}
		if (limit > 0)
		{
			WebhooksClaim *retries,
					   *fresh;
			int			nretries,
						nfresh = 0;
			bool		more_fresh = false;

			/* claims must outlive SPI_finish: they are sent after the commit */
			worker->new_batch_cxt = AllocSetContextCreate(worker->loop_cxt, "webhooks claims",
														  ALLOCSET_DEFAULT_SIZES);
			MemoryContextSwitchTo(worker->new_batch_cxt);
			/*
			 * What is due (retries, expired leases) and new events share the
			 * round: retries get at most half of it while events wait, so a
			 * failing endpoint with a short schedule cannot starve fresh events.
			 */
			nretries = webhooks_queue_claim(worker->events_waiting ? Max(limit / 2, 1) : limit,
											webhooks_secret_overlap_s, worker->retries,
											worker->nretries, &retries);
			retries_add(retries, nretries);
			if (nretries < limit)
				nfresh = webhooks_queue_dispatch(limit - nretries, lease_ms,
												 webhooks_secret_overlap_s, &fresh, &more_fresh);
			nclaims = nretries + nfresh;
			if (nfresh > 0)
			{
				worker->new_inflight.key = fresh[0].inflight_key;
				worker->new_inflight.remaining = nfresh;
				worker->new_inflight.leased_until =
					TimestampTzPlusMilliseconds(GetCurrentTimestamp(), lease_ms);
			}
			claims = palloc(sizeof(WebhooksClaim) * Max(nclaims, 1));
			memcpy(claims, retries, sizeof(WebhooksClaim) * nretries);
			if (nfresh > 0)
				memcpy(claims + nretries, fresh, sizeof(WebhooksClaim) * nfresh);
			MemoryContextSwitchTo(worker->round_cxt);
			/* a full batch means more may be waiting right now */
			worker->events_waiting = more_fresh;
			worker->work_signalled = nretries >= limit / 2 || more_fresh;
		}
		else
			worker->work_signalled = true;	/* the queue is full: claim when it drains */
		worker->next_due = webhooks_queue_next_due(worker->retries, worker->nretries);
		SPI_finish();
	}
	commit_transaction();
	if (!present)
		exit_without_extension();

	/* recorded: forget them */
	inflight_recorded();
	retries_done();
	worker->noutcomes = 0;
	MemoryContextReset(worker->outcome_cxt);
	if (worker->new_inflight.key != 0)
		inflight_add(&worker->new_inflight);
	worker->new_inflight.key = 0;

	/* housekeeping in a transaction of its own, after the round's commit */
	if (maintenance)
	{
		begin_transaction("pg-webhooks: housekeeping");
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		MemoryContextSwitchTo(worker->round_cxt);
		webhooks_queue_maintain();
		SPI_finish();
		commit_transaction();
	}

	if (worker->new_batch_cxt != NULL && nclaims > 0)
	{
		ClaimBatch *batch = palloc(sizeof(ClaimBatch));

		batch->cxt = worker->new_batch_cxt;
		batch->claims = claims;
		batch->n = nclaims;
		batch->next = 0;
		worker->batches = lappend(worker->batches, batch);
		worker->queued += nclaims;
	}
	else if (worker->new_batch_cxt != NULL)
		MemoryContextDelete(worker->new_batch_cxt);
	worker->new_batch_cxt = NULL;
}

/*
 * Sign and start one claim.  An error here (a secret that cannot be
 * decoded, a curl handle that cannot be set up) fails this attempt only.
 */
static void
start_claim(ClaimBatch *batch, WebhooksClaim *c)
{
	MemoryContext old = MemoryContextSwitchTo(batch->cxt);

	PG_TRY();
	{
		if (!c->webhook_exists || !c->webhook_enabled)
			cancel_claim(c);
		else
		{
			sign_claim(c);
			start_request(c);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		WebhooksOutcome *o;
		int64		delay;

		MemoryContextSwitchTo(worker->outcome_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(LOG,
				(errmsg("pg-webhooks could not send delivery " INT64_FORMAT ": %s",
						c->delivery_id, edata->message)));
		o = new_outcome(c->delivery_id, c->webhook_id, c->attempt, c->inflight_key, c->event_id);
		o->started_at = GetCurrentTimestamp();
		o->error = psprintf("could not send: %s", edata->message);
		/* an attempt like any failed one: retried on the schedule, then failed */
		delay = retry_delay_ms(c->attempt, -1, 0);
		if (delay < 0)
		{
			o->status = "failed";
			o->error = psprintf("%s (no retries left after %d attempts)", o->error, c->attempt);
		}
		else
		{
			o->status = "pending";
			/* at least a second: such errors do not go away by themselves */
			o->next_at = TimestampTzPlusMilliseconds(o->started_at, Max(delay, 1000));
		}
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}

/* Start queued claims while request slots are free. */
static void
start_queued(void)
{
	int			slots = request_slots();

	while (worker->batches != NIL && webhooks_http_in_flight(worker->http) < slots)
	{
		ClaimBatch *batch = (ClaimBatch *) linitial(worker->batches);

		worker->queued--;
		start_claim(batch, &batch->claims[batch->next++]);
		if (batch->next >= batch->n)
		{
			MemoryContextDelete(batch->cxt);
			worker->batches = list_delete_first(worker->batches);
			pfree(batch);
		}
	}
}

/* After a reload: apply webhooks.max_connections (a larger pool when idle). */
static void
apply_max_connections(void)
{
	if (webhooks_max_connections > webhooks_http_capacity(worker->http))
		worker->resize_pending = true;
	webhooks_http_set_connection_limit(worker->http, webhooks_max_connections);
	if (worker->resize_pending && webhooks_http_in_flight(worker->http) == 0)
	{
		webhooks_http_destroy(worker->http);
		worker->http = NULL;
		worker->http = webhooks_http_create(webhooks_max_connections);
		worker->resize_pending = false;
	}
}

/* A round, with errors reported and survived. */
static void
safe_round(bool maintenance)
{
	MemoryContext loop_cxt = CurrentMemoryContext;

	worker->last_round = GetCurrentTimestamp();
	if (maintenance)
		worker->last_maintenance = worker->last_round;
	PG_TRY();
	{
		run_round(maintenance);
		start_queued();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(loop_cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		/* the failed round's claims are dropped: they are due again */
		worker->new_inflight.key = 0;
		worker->nretries = Min(worker->nretries, worker->nretries_before_round);
		if (worker->new_batch_cxt != NULL)
			MemoryContextDelete(worker->new_batch_cxt);
		worker->new_batch_cxt = NULL;
		pgstat_report_activity(STATE_IDLE, NULL);
		/*
		 * Outcomes that could not be recorded are dropped: retries are due
		 * again at once, first attempts once their inflight_first_attempts
		 * row's lease runs out.
		 */
		retries_done();
		worker->noutcomes = 0;
		MemoryContextReset(worker->outcome_cxt);
		worker->work_signalled = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ERROR_BACKOFF_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(loop_cxt);
}

/* Is it time for a round? */
static bool
round_due(TimestampTz now)
{
	int			in_flight = webhooks_http_in_flight(worker->http);
	int			capacity = request_slots();
	long		since_round = ms_between(worker->last_round, now);
	bool		needs_claims = worker->queued < capacity;

	if (ms_between(worker->last_maintenance, now) >= MAINTENANCE_INTERVAL_MS)
		return true;
	if (worker->noutcomes > 0 &&
		(worker->noutcomes >= webhooks_batch_size || since_round >= RECORD_DELAY_MS ||
		 (needs_claims && (worker->work_signalled || in_flight <= capacity / 2))))
		return true;
	if (!needs_claims)
		return false;
	if (worker->work_signalled)
		return true;
	return worker->next_due != 0 && now >= worker->next_due && since_round >= 10;
}

static long
wait_timeout(TimestampTz now)
{
	long		timeout = MAINTENANCE_INTERVAL_MS - ms_between(worker->last_maintenance, now);

	if (worker->noutcomes > 0)
		timeout = Min(timeout, RECORD_DELAY_MS);
	if (worker->next_due != 0)
		timeout = Min(timeout, Max(ms_between(now, worker->next_due), 10));
	return Max(timeout, 0);
}

/*
 * Every statement of the worker is meant to reach its rows through an
 * index (due time, primary keys).  Its statistics lag behind a burst of
 * events, and a plan made from them would hash or scan a whole queue
 * table at every round; these settings, for this process only, keep the
 * plans on the indexes whatever the statistics say.
 */
static void
pin_plans(void)
{
	static const char *const off[] = {"enable_seqscan", "enable_hashjoin", "enable_mergejoin",
	"enable_bitmapscan"};
	int			i;

	for (i = 0; i < lengthof(off); i++)
		SetConfigOption(off[i], "off", PGC_USERSET, PGC_S_SESSION);
	/* the costs these settings add would otherwise make every round JIT-compile */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
}

static void
startup_round(void)
{
	begin_transaction("pg-webhooks: recovering interrupted deliveries");
	{
		char	   *name = get_database_name(MyDatabaseId);

		if (name)
			strlcpy(database_name, name, sizeof(database_name));
	}
	if (!extension_present())
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		exit_without_extension();
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		uint64		recovered = webhooks_queue_recover();

		if (recovered > 0)
			ereport(LOG,
					(errmsg("pg-webhooks: " UINT64_FORMAT " deliveries interrupted by a restart will be sent again",
							recovered)));
	}
	SPI_finish();
	commit_transaction();
}

void
webhooks_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	if (!webhooks_worker_attach(dboid))
		proc_exit(0);			/* another worker serves this database */
	before_shmem_exit(on_worker_exit, (Datum) 0);
	pgstat_report_appname("pg-webhooks worker");

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "webhooks worker", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loop_cxt);
	worker = palloc0(sizeof(Worker));
	worker->loop_cxt = loop_cxt;
	worker->round_cxt = AllocSetContextCreate(loop_cxt, "webhooks round", ALLOCSET_DEFAULT_SIZES);
	worker->outcome_cxt = AllocSetContextCreate(loop_cxt, "webhooks outcomes", ALLOCSET_DEFAULT_SIZES);
	worker->max_outcomes = 256;
	worker->max_inflight = 16;
	worker->max_retries = 256;
	worker->retries = palloc(sizeof(int64) * worker->max_retries);
	worker->inflight = palloc(sizeof(InflightRow) * worker->max_inflight);
	worker->outcomes = palloc(sizeof(WebhooksOutcome) * worker->max_outcomes);
	worker->started_at = GetCurrentTimestamp();
	worker->owner = ResourceOwnerCreate(NULL, "pg-webhooks worker");

	pin_plans();
	startup_round();
	MemoryContextSwitchTo(loop_cxt);
	worker->http = webhooks_http_create(webhooks_max_connections);
	worker->work_signalled = true;
	ereport(LOG,
			(errmsg("pg-webhooks worker started for database \"%s\"", database_name)));

	for (;;)
	{
		TimestampTz now;
		WebhooksRequest *req;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			apply_max_connections();
		}
		if (worker->resize_pending)
			apply_max_connections();
		now = GetCurrentTimestamp();
		if (!worker->reported_healthy && ms_between(worker->started_at, now) > HEALTHY_AFTER_MS)
		{
			webhooks_worker_healthy();
			worker->reported_healthy = true;
		}
		if (round_due(now))
			safe_round(ms_between(worker->last_maintenance, now) >= MAINTENANCE_INTERVAL_MS);

		now = GetCurrentTimestamp();
		if (webhooks_http_wait(worker->http, wait_timeout(now)))
		{
			ResetLatch(MyLatch);
			worker->work_signalled = true;
		}
		while ((req = webhooks_http_next_done(worker->http)) != NULL)
			request_finished(req);
		start_queued();
	}
}
