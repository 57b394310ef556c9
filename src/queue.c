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
}
