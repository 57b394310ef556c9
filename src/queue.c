/*
 * queue.c
 *     Writing captured events into webhooks.dispatch_queue, and the
 *     worker's side of the queue: dispatch (moving events to
 *     webhooks.event_store and fanning them out into deliveries), claim,
 *     record, prune.
 *
 * One event per captured change, whatever the number of webhooks that
 * want it (their ids go in webhook_ids), written in the transaction of the
 * change, so a rollback queues nothing and a commit loses nothing.  The
 * writer appends events to the dispatch queue in rows of up to 32 (one heap
 * tuple and one index entry for 32 changes, the payloads LZ4-compressed
 * together): an index entry and a tuple per event cost the writer about as
 * much as the change itself.  The worker, off the writer's path, unpacks a
 * row into one event_store row per event in the transaction that creates
 * their deliveries.
 *
 * The capture trigger does not insert row by row: running the executor
 * once per changed row would cost more than the change itself.  It hands
 * events to a buffer, which is written with table_multi_insert (as COPY
 * writes) when it holds FLUSH_EVENTS rows, when the statement ends
 * (a statement-level trigger next to the row trigger, see track()), and
 * in any case before the transaction commits or prepares.  Each buffered
 * event remembers the subtransaction that produced it: a rolled-back
 * savepoint drops its events, and a flush only writes events of the
 * current subtransaction, so an event is never written inside a nested
 * subtransaction that could roll back without the change that made it.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/toast_internals.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_capture_flush);

#define FLUSH_EVENTS 1000
#define QUEUE_COLUMNS 8			/* webhooks.dispatch_queue */
#define STORE_COLUMNS 8			/* webhooks.event_store */
#define QUEUE_ROW_EVENTS 32		/* events per dispatch_queue row, at most */
#define QUEUE_ROW_BYTES 16384	/* payload bytes per row before compression, at most */
#define PAYLOAD_COMPRESS_MIN 256	/* bytes: smaller payloads are stored as they are */

typedef struct PendingEvent
{
	SubTransactionId subxid;
	pg_uuid_t	id;
	Datum		type;			/* text */
	bool		has_site;
	int64		site_id;
	bool		has_space;
	int64		space_id;
	int64	   *webhook_ids;
	int			nwebhooks;
	Datum		payload;		/* json (as text), not compressed */
	TimestampTz created_at;
} PendingEvent;

static MemoryContext pending_cxt = NULL;	/* child of TopTransactionContext */
static PendingEvent *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;
static bool callbacks_registered = false;

static Datum
int8_array(const int64 *values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * A varlena LZ4-compressed when that makes it smaller.  A row under 2 kB
 * is never compressed by TOAST, but payloads are JSON whose keys and values
 * repeat (and the payloads of a queue row repeat each other): compressing
 * here writes fewer bytes to the heap and the WAL.  Every reader
 * decompresses transparently (the datum is an ordinary inline-compressed
 * varlena, as TOAST makes them).
 */
static Datum
compressed(Datum plain)
{
#ifdef USE_LZ4
	if (VARSIZE_ANY_EXHDR(DatumGetPointer(plain)) >= PAYLOAD_COMPRESS_MIN)
	{
		Datum		packed = toast_compress_datum(plain, TOAST_LZ4_COMPRESSION);

		if (DatumGetPointer(packed) != NULL)
			return packed;
	}
#endif
	return plain;
}

static void
forget_pending(void)
{
	pending_cxt = NULL;			/* freed with TopTransactionContext */
	pending = NULL;
	npending = 0;
	maxpending = 0;
}

/* The OID of a table of the extension (looked up per flush: two syscache probes). */
static Oid
queue_table_relid(const char *relname)
{
	Oid			nsp = get_namespace_oid(WEBHOOKS_SCHEMA, false);
	Oid			relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table webhooks.%s does not exist", relname),
				 errhint("Reinstall the extension: DROP EXTENSION webhooks; CREATE EXTENSION webhooks;")));
	return relid;
}

/* Whether b can share a dispatch_queue row with a (whose row-level columns it must match). */
static bool
same_queue_row(const PendingEvent *a, const PendingEvent *b)
{
	return a->nwebhooks == b->nwebhooks &&
		memcmp(a->webhook_ids, b->webhook_ids, sizeof(int64) * a->nwebhooks) == 0;
}

/* The events written by one flush, cut into dispatch_queue rows. */
typedef struct QueueRows
{
	PendingEvent **events;		/* in id order */
	int			nevents;
	int		   *first;			/* row i holds events first[i] .. first[i + 1] - 1 */
	int			nrows;
} QueueRows;

/*
 * Cut the events into rows: consecutive events with the same webhooks, up to QUEUE_ROW_EVENTS of them and QUEUE_ROW_BYTES of
 * payload (so that a compressed row usually stays within one heap page).
 */
static void
cut_queue_rows(QueueRows *rows)
{
	int			i,
				in_row = 0;
	Size		bytes = 0;

	rows->first = palloc(sizeof(int) * (rows->nevents + 1));
	rows->nrows = 0;
	for (i = 0; i < rows->nevents; i++)
	{
		Size		len = VARSIZE_ANY_EXHDR(DatumGetPointer(rows->events[i]->payload));

		if (in_row == 0 || in_row >= QUEUE_ROW_EVENTS || bytes + len > QUEUE_ROW_BYTES ||
			!same_queue_row(rows->events[i - 1], rows->events[i]))
		{
			rows->first[rows->nrows++] = i;
			in_row = 0;
			bytes = 0;
		}
		in_row++;
		bytes += len;
	}
	rows->first[rows->nrows] = rows->nevents;
}

/* Fill a slot with dispatch_queue row i, in the table's column order. */
static void
store_queue_row(TupleTableSlot *slot, int i, void *arg)
{
	const QueueRows *rows = arg;
	int			first = rows->first[i];
	int			n = rows->first[i + 1] - first;
	PendingEvent *const *ev = &rows->events[first];
	Datum		ids[QUEUE_ROW_EVENTS],
				types[QUEUE_ROW_EVENTS],
				sites[QUEUE_ROW_EVENTS],
				spaces[QUEUE_ROW_EVENTS],
				payloads[QUEUE_ROW_EVENTS],
				times[QUEUE_ROW_EVENTS];
	bool		no_site[QUEUE_ROW_EVENTS],
				no_space[QUEUE_ROW_EVENTS];
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			k;

	for (k = 0; k < n; k++)
	{
		ids[k] = UUIDPGetDatum(&ev[k]->id);
		types[k] = ev[k]->type;
		sites[k] = Int64GetDatum(ev[k]->site_id);
		no_site[k] = !ev[k]->has_site;
		spaces[k] = Int64GetDatum(ev[k]->space_id);
		no_space[k] = !ev[k]->has_space;
		payloads[k] = ev[k]->payload;
		times[k] = TimestampTzGetDatum(ev[k]->created_at);
	}
	ExecClearTuple(slot);
	memset(slot->tts_isnull, 0, sizeof(bool) * QUEUE_COLUMNS);
	/* ids grow within a backend, and the events are in id order */
	slot->tts_values[0] = UUIDPGetDatum(&ev[0]->id);
	slot->tts_values[1] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false,
														  TYPALIGN_CHAR));
	slot->tts_values[2] = PointerGetDatum(construct_array(types, n, TEXTOID, -1, false,
														  TYPALIGN_INT));
	slot->tts_values[3] = PointerGetDatum(construct_md_array(sites, no_site, 1, dims, lbs, INT8OID,
															 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	slot->tts_values[4] = PointerGetDatum(construct_md_array(spaces, no_space, 1, dims, lbs, INT8OID,
															 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	slot->tts_values[5] = int8_array(ev[0]->webhook_ids, ev[0]->nwebhooks);
	slot->tts_values[6] = compressed(PointerGetDatum(construct_array(payloads, n, JSONOID, -1, false,
																	 TYPALIGN_INT)));
	slot->tts_values[7] = PointerGetDatum(construct_array(times, n, TIMESTAMPTZOID, 8,
														  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ExecStoreVirtualTuple(slot);
}

/*
 * Insert nrows rows, made by fill, into webhooks.<relname> and its indexes
 * with table_multi_insert, as COPY does: no executor start-up, no SQL.
 * The queue tables have no triggers, rules or constraints beyond what the
 * values satisfy by construction.  Allocates in the caller's (short-lived)
 * context.
 */
static void
insert_rows(const char *relname, int natts, int nrows,
			void (*fill) (TupleTableSlot *slot, int i, void *arg), void *arg)
{
	Relation	rel = table_open(queue_table_relid(relname), RowExclusiveLock);
	ResultRelInfo *rri;
	EState	   *estate;
	TupleDesc	desc;
	TupleTableSlot **slots;
	int			i;

	if (RelationGetDescr(rel)->natts != natts)
		elog(ERROR, "webhooks.%s has %d columns, expected %d",
			 relname, RelationGetDescr(rel)->natts, natts);
	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	/* an unpinned copy of the descriptor: slots on it need no resource owner */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	slots = palloc(sizeof(TupleTableSlot *) * nrows);
	for (i = 0; i < nrows; i++)
	{
		slots[i] = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
		fill(slots[i], i, arg);
	}
	table_multi_insert(rel, slots, nrows, GetCurrentCommandId(true), 0, NULL);
	for (i = 0; i < nrows; i++)
	{
		List	   *recheck;

		ResetPerTupleExprContext(estate);
#if PG_VERSION_NUM >= 160000
		recheck = ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL, false);
#else
		recheck = ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
#endif
		list_free(recheck);
		ExecDropSingleTupleTableSlot(slots[i]);
	}
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/*
 * Write the buffered events of subtransaction subxid (all of them if
 * InvalidSubTransactionId) into webhooks.dispatch_queue for the worker.
 * Events of other levels stay buffered.
 */
static void
flush_pending(SubTransactionId subxid)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext tmp;
	QueueRows	rows;
	int			kept = 0,
				i;

	if (npending == 0)
		return;
	tmp = AllocSetContextCreate(CurrentMemoryContext, "webhooks flush", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(tmp);

	rows.events = palloc(sizeof(PendingEvent *) * npending);
	rows.nevents = 0;
	for (i = 0; i < npending; i++)
		if (subxid == InvalidSubTransactionId || pending[i].subxid == subxid)
			rows.events[rows.nevents++] = &pending[i];
	if (rows.nevents > 0)
	{
		cut_queue_rows(&rows);
		insert_rows("dispatch_queue", QUEUE_COLUMNS, rows.nrows, store_queue_row, &rows);
		webhooks_wake_at_commit();
	}
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(tmp);

	for (i = 0; i < npending; i++)
		if (subxid != InvalidSubTransactionId && pending[i].subxid != subxid)
			pending[kept++] = pending[i];
	npending = kept;
	if (npending == 0 && pending_cxt != NULL)
	{
		/* written: give the memory back now, not at the end of the transaction */
		MemoryContextReset(pending_cxt);
		pending = NULL;
		maxpending = 0;
	}
}

static void
queue_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* normally empty: statement triggers flush; this is the safety net */
			if (npending > 0)
			{
				PushActiveSnapshot(GetTransactionSnapshot());
				flush_pending(InvalidSubTransactionId);
				PopActiveSnapshot();
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			forget_pending();
			break;
		default:
			break;
	}
}

/* A rolled-back savepoint drops its events; a released one hands them up. */
static void
queue_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			i,
				kept = 0;

	if (npending == 0)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		for (i = 0; i < npending; i++)
			if (pending[i].subxid != mySubid)
				pending[kept++] = pending[i];
		npending = kept;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = 0; i < npending; i++)
			if (pending[i].subxid == mySubid)
				pending[i].subxid = parentSubid;
	}
}

/* Buffer an event of the current subtransaction; flushes a full buffer. */
void
webhooks_enqueue_buffered(const WebhooksEvent *ev)
{
	MemoryContext old;
	PendingEvent *p;

	if (!callbacks_registered)
	{
		RegisterXactCallback(queue_xact_callback, NULL);
		RegisterSubXactCallback(queue_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (pending_cxt == NULL)
		pending_cxt = AllocSetContextCreate(TopTransactionContext, "webhooks pending events",
											ALLOCSET_DEFAULT_SIZES);
	/* test notifications are written by send_test(), with their delivery */
	Assert(!ev->test);
	old = MemoryContextSwitchTo(pending_cxt);
	if (npending >= maxpending)
	{
		maxpending = Max(64, maxpending * 2);
		pending = pending ? repalloc(pending, sizeof(PendingEvent) * maxpending)
			: palloc(sizeof(PendingEvent) * maxpending);
	}
	p = &pending[npending++];
	p->subxid = GetCurrentSubTransactionId();
	p->id = ev->id;
	p->type = CStringGetTextDatum(ev->type);
	p->has_site = ev->has_site;
	p->site_id = ev->site_id;
	p->has_space = ev->has_space;
	p->space_id = ev->space_id;
	p->nwebhooks = ev->nwebhooks;
	p->webhook_ids = palloc(sizeof(int64) * Max(ev->nwebhooks, 1));
	memcpy(p->webhook_ids, ev->webhook_ids, sizeof(int64) * ev->nwebhooks);
	p->payload = PointerGetDatum(cstring_to_text_with_len(ev->payload->data, ev->payload->len));
	p->created_at = ev->created_at;
	MemoryContextSwitchTo(old);

	if (npending >= FLUSH_EVENTS)
		flush_pending(GetCurrentSubTransactionId());
}

/* Queue the event now, in the current transaction (emit()). */
void
webhooks_enqueue(const WebhooksEvent *ev)
{
	webhooks_enqueue_buffered(ev);
	flush_pending(GetCurrentSubTransactionId());
}

/*
 * The statement-level trigger that track() puts next to the row trigger:
 * the statement's events are written when it ends.
 */
Datum
webhooks_capture_flush(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks._capture_flush() must be called as a trigger")));
	flush_pending(GetCurrentSubTransactionId());
	PG_RETURN_POINTER(NULL);
}

/* ---------------------------------------------------------------------
 * The worker's side of the queue.  Every function below runs inside the
 * worker's short transaction, with SPI connected by the caller; none is
 * ever called while a request is waiting on the network.
 * ---------------------------------------------------------------------
 */

static Datum make_array(Datum *elems, bool *isnull, int n, Oid elemtype);

#define MAX_WORKER_PLANS 16

/* The worker's statements, prepared once per process (keyed by their text). */
static struct
{
	const char *sql;
	SPIPlanPtr	plan;
}			worker_plans[MAX_WORKER_PLANS];

static SPIPlanPtr
worker_plan(const char *sql, int nargs, Oid *argtypes)
{
	int			i;
	SPIPlanPtr	plan;

	for (i = 0; i < MAX_WORKER_PLANS && worker_plans[i].sql != NULL; i++)
		if (worker_plans[i].sql == sql)
			return worker_plans[i].plan;
	/*
	 * Generic plans: the planner settings are pinned and the plans are the
	 * same for any parameter values, but with custom plans (the plan
	 * cache's default while a generic plan looks costlier) every round would
	 * be planned again.
	 */
	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare a webhooks worker statement (%s): %.60s...",
			 SPI_result_code_string(SPI_result), sql);
	if (i >= MAX_WORKER_PLANS)
		return plan;			/* not kept: freed with the SPI connection */
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep a webhooks worker statement");
	worker_plans[i].sql = sql;
	worker_plans[i].plan = plan;
	return plan;
}

/*
 * Run one of the worker's statements (their texts are string constants, so
 * the pointer identifies them): planned once, not parsed and planned again
 * every round.  Like webhooks_spi_select, stays in the caller's context.
 */
static void
run(const char *sql, int nargs, Oid *argtypes, Datum *args, const char *nulls, int expected)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc = SPI_execute_plan(worker_plan(sql, nargs, argtypes), args, nulls, false, 0);

	MemoryContextSwitchTo(caller);
	if (rc != expected)
		elog(ERROR, "webhooks worker query failed (%s): %.60s...", SPI_result_code_string(rc), sql);
}

/*
 * First attempts whose outcome was never recorded (the worker stopped, or
 * could not record it before the lease of its inflight_first_attempts row
 * ran out): create their delivery rows, with the ids taken at dispatch, as
 * pending with an "interrupted" attempt, to be sent again now.  A delivery
 * whose outcome was recorded already is left as it is.  all: every row
 * (at start-up), else only those whose lease ran out.
 */
static uint64
recover_first_attempts(bool all)
{
	Oid			argtypes[1] = {BOOLOID};
	Datum		args[1] = {BoolGetDatum(all)};

	run("WITH f AS (DELETE FROM webhooks.inflight_first_attempts WHERE $1 OR leased_until < now() "
		"           RETURNING delivery_ids, event_ids, webhook_ids), "
		"     d AS (INSERT INTO webhooks.deliveries (id, event_id, webhook_id, status, attempts, "
		"                                            next_attempt_at, last_attempt_at) "
		"           OVERRIDING SYSTEM VALUE "
		"           SELECT p.d, p.e, p.w, 'pending', 1, now(), now() "
		"           FROM f, unnest(f.delivery_ids, f.event_ids, f.webhook_ids) AS p(d, e, w) "
		"           ON CONFLICT (id) DO NOTHING RETURNING id) "
		"INSERT INTO webhooks.attempts (delivery_id, attempt, started_at, error) "
		"SELECT id, 1, now(), 'interrupted: the worker stopped while this attempt was in flight' "
		"FROM d", 1, argtypes, args, NULL, SPI_OK_INSERT);
	return SPI_processed;
}

/*
 * At start-up: first attempts the previous worker had in flight are created
 * and sent again now (at-least-once, with the same webhook-id).  Retries it
 * had in flight need nothing: they are still pending and due.
 */
uint64
webhooks_queue_recover(void)
{
	return recover_first_attempts(true);
}

/*
 * What a claim needs of its webhook, as the last columns of a claim query
 * that joins "hooks w" (HOOKS_CTE): each webhook's headers are turned
 * into "Name: value" lines once per query, not once per delivery.
 */
#define HOOKS_CTE \
	"hooks AS MATERIALIZED (SELECT id, enabled, url, secret, previous_secret, secret_rotated_at, " \
	"          ARRAY(SELECT h.key || ': ' || h.value FROM jsonb_each_text(headers) h) AS header_lines " \
	"          FROM webhooks.webhooks) "
#define WEBHOOK_COLUMNS \
	"w.id IS NOT NULL, coalesce(w.enabled, false), w.url, w.header_lines, w.secret, " \
	"CASE WHEN w.secret_rotated_at > now() - $3 * interval '1 second' THEN w.previous_secret END "

/* SPI_getvalue copies into the current memory context; NULL stays NULL. */
static char *
copy_text(HeapTuple tuple, TupleDesc desc, int attno)
{
	return SPI_getvalue(tuple, desc, attno);
}

/* Read the rows of a claim query into claims, in the caller's context. */
static int
read_claims(WebhooksClaim **claims)
{
	uint64		i;
	int			n = (int) SPI_processed;

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

/*
 * Where the last claim stopped in the due-time index (next_attempt_at, id),
 * so that the next one starts there rather than stepping again over the
 * deliveries still in flight and the dead index entries that a large
 * backlog leaves at the head of the index.  Retries scheduled after a claim
 * fall due after its mark; one that falls due behind it (a redelivery or
 * test notification whose transaction started before the claim and
 * committed after it) is reached when the mark is dropped,
 * CLAIM_MARK_MAX_MS after it was set.
 */
#define CLAIM_MARK_MAX_MS 2000
static TimestampTz claim_mark_at = DT_NOBEGIN;
static int64 claim_mark_id = 0;
static TimestampTz claim_mark_set = 0;

static void
drop_claim_mark(void)
{
	claim_mark_at = DT_NOBEGIN;
	claim_mark_id = 0;
	claim_mark_set = 0;
}

/*
 * Claim up to limit due deliveries (retries, redeliveries, test
 * notifications) and return what is needed to send them, in the caller's
 * memory context.  The rows are only read: the worker keeps the ones it is
 * sending in memory (in_flight, left out here) until their outcome is
 * recorded, so a retry costs one write (the outcome) instead of two.  If
 * the worker dies meanwhile, they are still due and are sent again.  The
 * ids are picked through the due-time index, the payload is read by the
 * events' primary key: no join ever hashes a whole queue table.
 */
int
webhooks_queue_claim(int limit, int overlap_s, const int64 *in_flight, int nin_flight,
					 WebhooksClaim **claims)
{
	Oid			argtypes[5] = {INT4OID, TIMESTAMPTZOID, INT4OID, INT8ARRAYOID, INT8OID};
	Datum		args[5];
	int			i;

	if (claim_mark_set != 0 &&
		TimestampDifferenceExceeds(claim_mark_set, GetCurrentTimestamp(), CLAIM_MARK_MAX_MS))
		drop_claim_mark();
	args[0] = Int32GetDatum(limit);
	args[1] = TimestampTzGetDatum(claim_mark_at);
	args[2] = Int32GetDatum(overlap_s);
	args[3] = int8_array(in_flight, nin_flight);
	args[4] = Int64GetDatum(claim_mark_id);
	run("WITH claimed AS ( "
		"  SELECT d.id, d.event_id, d.webhook_id, d.attempts + 1 AS attempts, d.next_attempt_at "
		"  FROM webhooks.deliveries d "
		"  WHERE d.status = 'pending' AND d.next_attempt_at <= now() "
		"    AND (d.next_attempt_at, d.id) > ($2, $5) AND d.id <> ALL ($4) "
		"  ORDER BY d.next_attempt_at, d.id LIMIT $1), "
		HOOKS_CTE
		"SELECT c.id, c.webhook_id, c.attempts, c.event_id::text, "
		"       (SELECT e.payload::text FROM webhooks.event_store e WHERE e.id = c.event_id), "
		WEBHOOK_COLUMNS
		", c.next_attempt_at "
		"FROM claimed c LEFT JOIN hooks w ON w.id = c.webhook_id",
		5, argtypes, args, NULL, SPI_OK_SELECT);
	/* the mark: the greatest (next_attempt_at, id) claimed */
	for (i = 0; i < (int) SPI_processed; i++)
	{
		bool		isnull;
		TimestampTz at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 12, &isnull));
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));

		if (at > claim_mark_at || (at == claim_mark_at && id > claim_mark_id))
		{
			claim_mark_at = at;
			claim_mark_id = id;
		}
	}
	if (claim_mark_set == 0)
		claim_mark_set = GetCurrentTimestamp();
	return read_claims(claims);
}

/* One event taken from the dispatch queue by the worker. */
typedef struct QueuedEvent
{
	pg_uuid_t	id;
	Datum		type;
	Datum		site_id;
	bool		no_site;
	Datum		space_id;
	bool		no_space;
	Datum		webhook_ids;	/* int8[] of its queue row */
	Datum	   *hooks;			/* its elements */
	int			nwebhooks;
	Datum		payload;		/* json, plain */
	TimestampTz created_at;
} QueuedEvent;

static int
compare_queued_events(const void *a, const void *b)
{
	return memcmp(((const QueuedEvent *) a)->id.data, ((const QueuedEvent *) b)->id.data, UUID_LEN);
}

/* Fill a slot with event i of a QueuedEvent array, in webhooks.event_store's column order. */
static void
store_event(TupleTableSlot *slot, int i, void *arg)
{
	const QueuedEvent *ev = &((const QueuedEvent *) arg)[i];
	Datum	   *values = slot->tts_values;
	bool	   *isnull = slot->tts_isnull;

	ExecClearTuple(slot);
	memset(isnull, 0, sizeof(bool) * STORE_COLUMNS);
	values[0] = UUIDPGetDatum(&ev->id);
	values[1] = ev->type;
	values[2] = ev->site_id;
	isnull[2] = ev->no_site;
	values[3] = ev->space_id;
	isnull[3] = ev->no_space;
	values[4] = ev->webhook_ids;
	values[5] = compressed(ev->payload);
	values[6] = BoolGetDatum(false);	/* test notifications never go through the queue */
	values[7] = TimestampTzGetDatum(ev->created_at);
	ExecStoreVirtualTuple(slot);
}

/*
 * The elements of an array column of an SPI row (count in *n, NULL flags in
 * *nulls); NULL if the column is NULL or not a one-dimensional array.
 */
static Datum *
array_column(HeapTuple tuple, TupleDesc desc, int attno, Oid elemtype, bool **nulls, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, attno, &isnull);
	ArrayType  *array;
	Datum	   *elems;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	*n = 0;
	if (isnull)
		return NULL;
	array = DatumGetArrayTypeP(d);
	if (ARR_NDIM(array) > 1 || ARR_ELEMTYPE(array) != elemtype)
		return NULL;
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(array, elemtype, typlen, typbyval, typalign, &elems, nulls, n);
	return elems;
}

static bool
any_null(const bool *nulls, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (nulls[i])
			return true;
	return false;
}

/*
 * Append the events of one dispatch_queue row (as the worker's DELETE
 * returned it) to events.  A row the writer cannot have made (arrays of
 * different lengths, NULL ids, payloads or times: only a superuser writing
 * into the queue by hand can make one) is left out with a WARNING: failing
 * the dispatch instead would stop every later event from being delivered.
 */
static void
append_queue_row(HeapTuple tuple, TupleDesc desc, QueuedEvent **events, int *n, int *max)
{
	bool	   *id_nulls,
			   *type_nulls,
			   *no_site,
			   *no_space,
			   *payload_nulls,
			   *time_nulls,
			   *hook_nulls,
				isnull;
	int			nids,
				ntypes,
				nsites,
				nspaces,
				npayloads,
				ntimes,
				nhooks,
				k;
	Datum	   *ids = array_column(tuple, desc, 1, UUIDOID, &id_nulls, &nids);
	Datum	   *types = array_column(tuple, desc, 2, TEXTOID, &type_nulls, &ntypes);
	Datum	   *sites = array_column(tuple, desc, 3, INT8OID, &no_site, &nsites);
	Datum	   *spaces = array_column(tuple, desc, 4, INT8OID, &no_space, &nspaces);
	Datum	   *hooks = array_column(tuple, desc, 5, INT8OID, &hook_nulls, &nhooks);
	Datum	   *payloads = array_column(tuple, desc, 6, JSONOID, &payload_nulls, &npayloads);
	Datum	   *times = array_column(tuple, desc, 7, TIMESTAMPTZOID, &time_nulls, &ntimes);
	Datum		hook_array = SPI_getbinval(tuple, desc, 5, &isnull);	/* checked below */

	if (ids == NULL || types == NULL || sites == NULL || spaces == NULL || hooks == NULL ||
		payloads == NULL || times == NULL ||
		ntypes != nids || nsites != nids || nspaces != nids || npayloads != nids || ntimes != nids ||
		any_null(id_nulls, nids) || any_null(type_nulls, nids) || any_null(payload_nulls, nids) ||
		any_null(time_nulls, nids) || any_null(hook_nulls, nhooks))
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pg-webhooks skipped a malformed row of webhooks.dispatch_queue"),
				 errdetail("first_event %s: event_ids %d, types %d, site_ids %d, space_ids %d, payloads %d, created_ats %d elements, some NULL or not one-dimensional.",
						   SPI_getvalue(tuple, desc, 8), nids, ntypes, nsites, nspaces, npayloads, ntimes),
				 errhint("Only the capture trigger should write to webhooks.dispatch_queue.")));
		return;
	}
	/* stored as it is in event_store, decompressed (never a TOAST pointer into the queue) */
	hook_array = PointerGetDatum(PG_DETOAST_DATUM(hook_array));
	if (*n + nids > *max)
	{
		*max = Max(*max * 2, *n + nids);
		*events = repalloc(*events, sizeof(QueuedEvent) * *max);
	}
	for (k = 0; k < nids; k++)
	{
		QueuedEvent *ev = &(*events)[(*n)++];

		memcpy(&ev->id, DatumGetUUIDP(ids[k]), sizeof(pg_uuid_t));
		ev->type = types[k];
		ev->site_id = sites[k];
		ev->no_site = no_site[k];
		ev->space_id = spaces[k];
		ev->no_space = no_space[k];
		ev->webhook_ids = hook_array;
		ev->hooks = hooks;
		ev->nwebhooks = nhooks;
		ev->payload = payloads[k];
		ev->created_at = DatumGetTimestampTz(times[k]);
	}
}

/*
 * Read the dispatch_queue rows the worker just deleted into events, in
 * id order.  Every array of a row has one element per event.
 */
static QueuedEvent *
read_queued_events(int *nevents)
{
	uint64		r;
	int			n = 0,
				max = 64;
	QueuedEvent *events = palloc(sizeof(QueuedEvent) * max);

	for (r = 0; r < SPI_processed; r++)
		append_queue_row(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, &events, &n, &max);
	/* queue rows come back in no particular order; event_store is appended in id order */
	qsort(events, n, sizeof(QueuedEvent), compare_queued_events);
	*nevents = n;
	return events;
}

/*
 * Deliveries per dispatch_queue row in the last rows dispatched: how many
 * rows to take for a given number of deliveries.  Rows hold up to 32
 * events (fewer when payloads are large or consecutive events matched
 * other webhooks), and each event goes to the webhooks that matched it: one
 * of ten webhooks filtered by site, or all ten.
 */
static int	deliveries_per_row = QUEUE_ROW_EVENTS;

/*
 * Dispatch new events: take the oldest rows of webhooks.dispatch_queue,
 * move their events to webhooks.event_store, and claim the first attempt
 * of one delivery per webhook in each event's webhook_ids (its row is
 * written with the outcome); return those claims.  The payloads come with
 * the queue rows: no event is read back.  At most about limit deliveries:
 * as many queue rows as the last ones dispatched say make limit deliveries.
 * *more says whether events are still waiting.
 */
int
webhooks_queue_dispatch(int limit, int lease_ms, int overlap_s, WebhooksClaim **claims,
						bool *more)
{
	Oid			argtypes[4] = {INT4OID, INT4OID, INT4OID, INT4OID};
	Datum		args[4] = {Int32GetDatum(limit), Int32GetDatum(lease_ms), Int32GetDatum(overlap_s),
	Int32GetDatum(deliveries_per_row)};
	Oid			pair_types[4] = {UUIDARRAYOID, INT8ARRAYOID, INT4OID, INT4OID};
	Datum		pair_args[4];
	QueuedEvent *events;
	Datum	   *pair_event,
			   *pair_hook;
	int		   *pair_of;
	bool	   *no;
	int			nevents,
				nrows,
				npairs = 0,
				n,
				i,
				k;
	bool		isnull;

	run("DELETE FROM webhooks.dispatch_queue "
		"WHERE first_event = ANY (ARRAY( "
		"  SELECT first_event FROM webhooks.dispatch_queue ORDER BY first_event "
		"  LIMIT greatest(1, $1 / $4))) "
		"RETURNING event_ids, types, site_ids, space_ids, webhook_ids, payloads, created_ats, first_event",
		4, argtypes, args, NULL, SPI_OK_DELETE_RETURNING);
	nrows = (int) SPI_processed;
	events = read_queued_events(&nevents);
	*more = false;
	if (nevents == 0)
	{
		*claims = palloc0(sizeof(WebhooksClaim));
		return 0;
	}
	insert_rows("event_store", STORE_COLUMNS, nevents, store_event, events);

	/* one (event, webhook) pair per delivery, in event order */
	for (i = 0; i < nevents; i++)
		npairs += events[i].nwebhooks;
	if (nrows > 0)
		deliveries_per_row = Max(1, npairs / nrows);
	pair_event = palloc(sizeof(Datum) * Max(npairs, 1));
	pair_hook = palloc(sizeof(Datum) * Max(npairs, 1));
	pair_of = palloc(sizeof(int) * Max(npairs, 1));
	no = palloc0(sizeof(bool) * Max(npairs, 1));
	npairs = 0;
	for (i = 0; i < nevents; i++)
	{
		for (k = 0; k < events[i].nwebhooks; k++)
		{
			pair_event[npairs] = UUIDPGetDatum(&events[i].id);
			pair_hook[npairs] = events[i].hooks[k];
			pair_of[npairs++] = i;
		}
	}
	pair_args[0] = make_array(pair_event, no, npairs, UUIDOID);
	pair_args[1] = make_array(pair_hook, no, npairs, INT8OID);
	pair_args[2] = Int32GetDatum(overlap_s);	/* $3 in WEBHOOK_COLUMNS */
	pair_args[3] = Int32GetDatum(lease_ms);

	/*
	 * No delivery row yet: it is inserted with the outcome of its first
	 * attempt, one write instead of an insert now and a (non-HOT) update
	 * then.  The deliveries' ids are taken now and kept, with the pairs, in
	 * one row of webhooks.inflight_first_attempts until every outcome is
	 * recorded: after a crash, or when its lease runs out, the deliveries
	 * still missing are created from it and sent again.
	 */
	run("WITH ids AS (SELECT array_agg(nextval('webhooks.deliveries_id_seq') ORDER BY n) AS ids "
		"             FROM generate_series(1, cardinality($1)) AS n), "
		"     f AS (INSERT INTO webhooks.inflight_first_attempts "
		"             (first_delivery, delivery_ids, event_ids, webhook_ids, leased_until) "
		"           SELECT ids[1], ids, $1, $2, now() + $4 * interval '1 millisecond' FROM ids "
		"           RETURNING delivery_ids), "
		HOOKS_CTE
		"SELECT p.d, p.w, 1, p.e::text, NULL::text, "
		WEBHOOK_COLUMNS
		"FROM f, unnest(f.delivery_ids, $1, $2) WITH ORDINALITY AS p(d, e, w, n) "
		"LEFT JOIN hooks w ON w.id = p.w "
		"ORDER BY p.n",
		4, pair_types, pair_args, NULL, SPI_OK_SELECT);
	n = read_claims(claims);
	if (n != npairs)
		elog(ERROR, "webhooks dispatch claimed %d deliveries for %d (event, webhook) pairs", n, npairs);
	for (i = 0; i < n; i++)
	{
		(*claims)[i].payload = TextDatumGetCString(events[pair_of[i]].payload);
		(*claims)[i].inflight_key = (*claims)[0].delivery_id;
	}

	run("SELECT EXISTS (SELECT 1 FROM webhooks.dispatch_queue)", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	*more = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
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
 * was cancelled before being sent), the delivery's new state (inserted for
 * a first attempt, updated for a retry), each webhook's health, and the
 * webhooks that answered 410 Gone disabled.  done lists the
 * inflight_first_attempts rows whose last outcome is in this batch.
 */
void
webhooks_queue_record(const WebhooksOutcome *outcomes, int n, const int64 *done, int ndone)
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
	Datum	   *event = palloc(sizeof(Datum) * n);
	bool	   *no = palloc0(sizeof(bool) * n);
	bool	   *null_status = palloc(sizeof(bool) * n);
	bool	   *null_error = palloc(sizeof(bool) * n);
	bool	   *null_started = palloc(sizeof(bool) * n);
	bool	   *null_response = palloc(sizeof(bool) * n);
	bool	   *null_next = palloc(sizeof(bool) * n);
	bool	   *null_event = palloc(sizeof(bool) * n);
	Oid			argtypes[11] = {INT8ARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TEXTARRAYOID, TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	UUIDARRAYOID};
	Datum		args[11];
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
		null_event[i] = o->inflight_key == 0;
		event[i] = null_event[i] ? (Datum) 0 : DirectFunctionCall1(uuid_in, CStringGetDatum(o->event_id));
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
	args[10] = make_array(event, null_event, n, UUIDOID);

	/*
	 * A first attempt's delivery is inserted, finished or pending its retry;
	 * if the row is already there (created from its inflight row after a
	 * lease ran out), the outcome updates it.
	 */
	run("WITH r AS (SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
		"           AS r(delivery_id, webhook_id, attempt, status, http_status, error, "
		"                started_at, duration_ms, response, next_at, event_id)), "
		"     a AS (INSERT INTO webhooks.attempts "
		"             (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body) "
		"           SELECT delivery_id, attempt, started_at, duration_ms, http_status, error, response "
		"           FROM r WHERE started_at IS NOT NULL ORDER BY delivery_id), "
		"     first AS (INSERT INTO webhooks.deliveries AS d (id, event_id, webhook_id, status, attempts, "
		"                 next_attempt_at, last_attempt_at, last_status, last_error, finished_at) "
		"               OVERRIDING SYSTEM VALUE "
		"               SELECT delivery_id, event_id, webhook_id, status, "
		"                      CASE WHEN started_at IS NULL THEN 0 ELSE 1 END, "
		"                      coalesce(next_at, now()), started_at, http_status, error, "
		"                      CASE WHEN status IN ('succeeded', 'failed', 'cancelled') THEN now() END "
		"               FROM r WHERE event_id IS NOT NULL ORDER BY delivery_id "
		"               ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
		"                 next_attempt_at = excluded.next_attempt_at, "
		"                 last_attempt_at = coalesce(excluded.last_attempt_at, d.last_attempt_at), "
		"                 last_status = excluded.last_status, last_error = excluded.last_error, "
		"                 finished_at = excluded.finished_at) "
		"UPDATE webhooks.deliveries d SET status = r.status, "
		"       attempts = CASE WHEN r.started_at IS NULL THEN d.attempts ELSE d.attempts + 1 END, "
		"       last_attempt_at = coalesce(r.started_at, d.last_attempt_at), "
		"       next_attempt_at = coalesce(r.next_at, d.next_attempt_at), "
		"       last_status = r.http_status, last_error = r.error, "
		"       finished_at = CASE WHEN r.status IN ('succeeded', 'failed', 'cancelled') THEN now() END "
		"FROM r WHERE r.event_id IS NULL AND d.id = r.delivery_id",
		11, argtypes, args, NULL, SPI_OK_UPDATE);

	if (ndone > 0)
	{
		Datum	   *keys = palloc(sizeof(Datum) * ndone);
		Oid			keytype[1] = {INT8ARRAYOID};
		Datum		keyarg[1];

		for (i = 0; i < ndone; i++)
			keys[i] = Int64GetDatum(done[i]);
		keyarg[0] = make_array(keys, no, ndone, INT8OID);
		run("DELETE FROM webhooks.inflight_first_attempts WHERE first_delivery = ANY ($1)",
			1, keytype, keyarg, NULL, SPI_OK_DELETE);
	}

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

	/*
	 * 410 Gone: the receiver says the endpoint is no more.  Only run when
	 * some receiver said so: any UPDATE of webhooks.webhooks, even of no
	 * row, fires the statement trigger that makes every backend drop its
	 * subscription cache and every cached plan on the table be replanned.
	 */
	for (i = 0; i < n && outcomes[i].http_status != 410; i++)
		;
	if (i == n)
		return;
	run("UPDATE webhooks.webhooks SET enabled = false, disabled_at = now(), "
		"       disabled_reason = 'disabled by pg-webhooks: the endpoint answered 410 Gone' "
		"WHERE enabled AND id IN (SELECT w FROM unnest($2, $5) AS r(w, s) WHERE s = 410)",
		10, argtypes, args, NULL, SPI_OK_UPDATE);
}

/*
 * When the next pending delivery not in flight falls due (0 if none is
 * pending), looking from the claim mark on, as the next claim will: the
 * retries in flight are behind the mark, and so are the index entries a
 * drained backlog leaves dead (while the mark is not set, the few hundred
 * retries in flight are stepped over).  While a mark is set, its expiry
 * counts as due: what fell due behind it is claimed then.
 */
TimestampTz
webhooks_queue_next_due(const int64 *in_flight, int nin_flight)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TIMESTAMPTZOID, INT8OID};
	Datum		args[3];
	bool		isnull;
	TimestampTz next = 0;

	args[0] = int8_array(in_flight, nin_flight);
	args[1] = TimestampTzGetDatum(claim_mark_at);
	args[2] = Int64GetDatum(claim_mark_id);
	run("SELECT next_attempt_at FROM webhooks.deliveries "
		"WHERE status = 'pending' AND (next_attempt_at, id) > ($2, $3) AND id <> ALL ($1) "
		"ORDER BY next_attempt_at, id LIMIT 1", 3, argtypes, args, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
		next = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (claim_mark_set != 0)
	{
		TimestampTz mark_expiry = TimestampTzPlusMilliseconds(claim_mark_set, CLAIM_MARK_MAX_MS);

		if (next == 0 || mark_expiry < next)
			next = mark_expiry;
	}
	return next;
}

#define PRUNE_BATCH 5000
#define PRUNE_MAX_BATCHES 20

/*
 * Where the walk over old events stopped last time.  Events are pruned in
 * id order (ids grow with time), a bounded slice per batch: an old event
 * that still has a pending delivery is stepped over, not rescanned at
 * every tick, and the walk starts again from the oldest once it reaches
 * the retention horizon.
 */
static pg_uuid_t prune_cursor;

/*
 * Where the walk of deliveries by id stopped last time (0: start over).
 * Deliveries are pruned walking the primary key in bounded slices rather
 * than through an index on finished_at: such an index would cost every
 * delivery one more index entry when it finishes, on the worker's hot path.
 */
static int64 prune_delivery_cursor = 0;
static TimestampTz prune_delivery_restart = 0;

#define PRUNE_RESTART_S 60

/*
 * Delete finished deliveries (with their attempts) older than the
 * retention.  Ids grow with creation time and a delivery finishes after it
 * is created, so the walk stops at the first delivery created within the
 * retention, and next time resumes from the last old one it saw: when
 * idle, a probe of one row.  What it stepped over (old deliveries still
 * retrying) is looked at again when the walk starts over from the oldest,
 * once a minute.
 */
static void
prune_deliveries(void)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, INT4OID};
	Datum		args[3];
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (now >= prune_delivery_restart)
	{
		prune_delivery_cursor = 0;
		prune_delivery_restart = TimestampTzPlusMilliseconds(now, PRUNE_RESTART_S * 1000);
	}
	for (i = 0; i < PRUNE_MAX_BATCHES; i++)
	{
		bool		isnull,
					old_null,
					count_null;
		Datum		last_old;
		int64		count;

		args[0] = Int64GetDatum(prune_delivery_cursor);
		args[1] = Int32GetDatum(webhooks_retention_s);
		args[2] = Int32GetDatum(PRUNE_BATCH);
		/* the usual case when idle: the next delivery is recent, nothing to read */
		run("SELECT coalesce((SELECT created_at >= now() - $2 * interval '1 second' "
			"                 FROM webhooks.deliveries WHERE id > $1 ORDER BY id LIMIT 1), true)",
			2, argtypes, args, NULL, SPI_OK_SELECT);
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			break;
		run("WITH slice AS (SELECT id, created_at, finished_at FROM webhooks.deliveries "
			"               WHERE id > $1 ORDER BY id LIMIT $3), "
			"     old AS (SELECT id FROM slice WHERE finished_at < now() - $2 * interval '1 second'), "
			"     a AS (DELETE FROM webhooks.attempts WHERE delivery_id IN (SELECT id FROM old)), "
			"     d AS (DELETE FROM webhooks.deliveries WHERE id IN (SELECT id FROM old)) "
			"SELECT (SELECT max(id) FROM slice WHERE created_at < now() - $2 * interval '1 second'), "
			"       (SELECT count(*) FROM slice)",
			3, argtypes, args, NULL, SPI_OK_SELECT);
		last_old = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &old_null);
		count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &count_null));
		if (!old_null)
			prune_delivery_cursor = DatumGetInt64(last_old);
		if (old_null || count < PRUNE_BATCH)
			break;				/* reached the retention window, or the end */
	}
}

/*
 * Delete events older than the retention that no delivery refers to (events
 * still in the dispatch queue are not in event_store yet).
 */
static void
prune_events(void)
{
	Oid			argtypes[3] = {UUIDOID, UUIDOID, INT4OID};
	Datum		args[3];
	pg_uuid_t	horizon;
	int			i;

	webhooks_event_id_floor(GetCurrentTimestamp() - (int64) webhooks_retention_s * USECS_PER_SEC, &horizon);
	for (i = 0; i < PRUNE_MAX_BATCHES; i++)
	{
		bool		isnull;
		Datum		last;

		args[0] = UUIDPGetDatum(&prune_cursor);
		args[1] = UUIDPGetDatum(&horizon);
		args[2] = Int32GetDatum(PRUNE_BATCH);
		run("WITH slice AS (SELECT id FROM webhooks.event_store "
			"               WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3), "
			"     gone AS (DELETE FROM webhooks.event_store e WHERE e.id = ANY (ARRAY( "
			"                SELECT s.id FROM slice s "
			"                WHERE NOT EXISTS (SELECT 1 FROM webhooks.deliveries d "
			"                                  WHERE d.event_id = s.id)))) "
			"SELECT (SELECT id FROM slice ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM slice)",
			3, argtypes, args, NULL, SPI_OK_SELECT);
		last = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull || DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) < PRUNE_BATCH)
		{
			memset(&prune_cursor, 0, sizeof(prune_cursor));	/* reached the horizon */
			break;
		}
		memcpy(&prune_cursor, DatumGetUUIDP(last), sizeof(prune_cursor));
	}
}

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
	bool		isnull;

	args[0] = Int32GetDatum(webhooks_disable_after_s);
	args[1] = Int32GetDatum(webhooks_disable_min_attempts);
	/* as for 410 above: no UPDATE of webhooks.webhooks unless one is to be disabled */
	run("SELECT EXISTS (SELECT 1 FROM webhooks.webhook_health h JOIN webhooks.webhooks w ON w.id = h.webhook_id "
		"               WHERE w.enabled AND h.failing_since <= now() - $1 * interval '1 second' "
		"                 AND h.consecutive_failures >= $2)",
		2, argtypes, args, NULL, SPI_OK_SELECT);
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		run("UPDATE webhooks.webhooks w SET enabled = false, disabled_at = now(), "
		"       disabled_reason = format('disabled by pg-webhooks: every delivery failed since %s "
		"(%s failed attempts); last error: %s', h.failing_since, h.consecutive_failures, "
		"coalesce(h.last_error, 'HTTP ' || h.last_status)) "
		"FROM webhooks.webhook_health h "
		"WHERE h.webhook_id = w.id AND w.enabled "
		"  AND h.failing_since <= now() - $1 * interval '1 second' "
		"  AND h.consecutive_failures >= $2",
			2, argtypes, args, NULL, SPI_OK_UPDATE);
	else
		SPI_processed = 0;
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("pg-webhooks disabled " UINT64_FORMAT " webhook(s) whose deliveries kept failing",
						SPI_processed)));

	if (recover_first_attempts(false) > 0)
		ereport(LOG,
				(errmsg("pg-webhooks: " UINT64_FORMAT " first attempts whose outcome was not recorded in time will be sent again",
						SPI_processed)));
	prune_deliveries();
	prune_events();
}
