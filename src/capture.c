/*
 * capture.c
 *     The capture trigger attached to CMS tables by webhooks.track(), and
 *     webhooks.emit() for events that are not row changes.
 *
 * For each changed row the trigger decides which event it is (created,
 * deleted, updated, or a transition such as published), asks the
 * subscription cache which webhooks want it, and only if one does builds
 * the payload and queues one event row, in the same transaction as the
 * change.  Per-table configuration (from webhooks.tracked_tables) is kept
 * in a per-backend hash keyed by the table's OID, with each column's JSON
 * output prepared once; it is rebuilt when the table's relcache entry is
 * invalidated (ALTER TABLE, track() again) or when tracked_tables changes.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/tupdesc.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_capture);
PG_FUNCTION_INFO_V1(webhooks_emit);

/* One column whose value change to one of some values is an event. */
typedef struct Transition
{
	int			attindex;		/* 0-based index in the tuple descriptor */
	int			nvalues;
	char	  **values;			/* value as text (see webhooks_value_text) */
	char	  **types;			/* the event type each value fires */
} Transition;

typedef struct TableCapture
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext mcxt;			/* everything below lives here */
	char	   *resource;
	WebhooksScope scope;
	int			id_attindex;	/* site or space id column; -1 if none */
	char	   *created_type;	/* NULL: not in the catalog */
	char	   *updated_type;
	char	   *deleted_type;
	int			natts;
	bool	   *in_payload;		/* false: dropped or excluded */
	WebhooksColumnOut *columns;
	int			ntransitions;
	Transition *transitions;
	/* does any enabled webhook want these events at all (sites aside)? */
	bool		created_wanted;
	bool		deleted_wanted;
	bool		update_wanted;	/* .updated or one of the transitions */
} TableCapture;

static HTAB *table_cache = NULL;
static Oid	tracking_relid;		/* the table whose row fetch_tracking_row found */

/* Relcache callback: forget a changed table, or all of them. */
static void
capture_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TableCapture *tc;

	if (table_cache == NULL)
		return;
	if (relid != InvalidOid && relid != webhooks_anchor_relid())
	{
		tc = hash_search(table_cache, &relid, HASH_FIND, NULL);
		if (tc)
			tc->valid = false;
		return;
	}
	hash_seq_init(&status, table_cache);
	while ((tc = hash_seq_search(&status)) != NULL)
		tc->valid = false;
}

/* May run in the postmaster (shared_preload_libraries): no allocation here. */
void
webhooks_capture_init(void)
{
	CacheRegisterRelcacheCallback(capture_invalidate, (Datum) 0);
}

static void
create_table_cache(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(TableCapture);
	ctl.hcxt = CacheMemoryContext;
	table_cache = hash_create("webhooks tracked tables", 32, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* "<resource>.<action>" if the catalog has it, else NULL. */
static char *
catalog_type(const char *resource, const char *action)
{
	char	   *type = psprintf("%s.%s", resource, action);

	if (webhooks_event_scope(type) == WEBHOOKS_SCOPE_UNKNOWN)
	{
		pfree(type);
		return NULL;
	}
	return type;
}

static int
attindex_by_name(TupleDesc desc, const char *name)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i;
	}
	return -1;
}

static int
required_attindex(Relation rel, const char *name)
{
	int			i = attindex_by_name(RelationGetDescr(rel), name);

	if (i < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of tracked table \"%s\" does not exist",
						name, RelationGetRelationName(rel)),
				 errhint("Call webhooks.track() again to update the configuration.")));
	return i;
}

/*
 * Find the tracked_tables row for this table, or for the partitioned
 * table it belongs to (row triggers on a partitioned table fire with the
 * partition as the relation).  Leaves the row in SPI_tuptable.
 */
static bool
fetch_tracking_row(Relation rel)
{
	List	   *candidates = list_make1_oid(RelationGetRelid(rel));
	ListCell   *lc;

	if (rel->rd_rel->relispartition)
		candidates = list_concat(candidates, get_partition_ancestors(RelationGetRelid(rel)));
	foreach(lc, candidates)
	{
		Oid			argtypes[1] = {OIDOID};
		Datum		args[1] = {ObjectIdGetDatum(lfirst_oid(lc))};

		webhooks_spi_select("SELECT resource, site_column::text, space_column::text, "
							"exclude::text[] FROM webhooks.tracked_tables "
							"WHERE tbl::oid = $1", 1, argtypes, args);
		if (SPI_processed == 1)
		{
			tracking_relid = lfirst_oid(lc);
			return true;
		}
	}
	return false;
}

static void
load_columns(TableCapture *tc, Relation rel, Datum exclude, bool exclude_null)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *names = NULL;
	bool	   *nulls;
	int			nexclude = 0;
	int			i,
				j;

	if (!exclude_null)
		deconstruct_array(DatumGetArrayTypeP(exclude), TEXTOID, -1, false, TYPALIGN_INT,
						  &names, &nulls, &nexclude);
	tc->natts = desc->natts;
	tc->in_payload = palloc0(sizeof(bool) * Max(desc->natts, 1));
	tc->columns = palloc0(sizeof(WebhooksColumnOut) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		tc->in_payload[i] = !att->attisdropped;
		for (j = 0; j < nexclude && tc->in_payload[i]; j++)
			if (strcmp(NameStr(att->attname), TextDatumGetCString(names[j])) == 0)
				tc->in_payload[i] = false;
		if (!att->attisdropped)
			webhooks_column_out_init(&tc->columns[i], NameStr(att->attname),
									 att->atttypid, tc->mcxt);
	}
}

static void
load_transitions(TableCapture *tc, Relation rel)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(tracking_relid)};
	uint64		i;

	webhooks_spi_select("SELECT c.key, v.key, v.value #>> '{}' "
						"FROM webhooks.tracked_tables t, "
						"     jsonb_each(t.transitions) c, jsonb_each(c.value) v "
						"WHERE t.tbl::oid = $1 ORDER BY c.key, v.key",
						1, argtypes, args);
	tc->transitions = palloc0(sizeof(Transition) * Max(SPI_processed, 1));
	tc->ntransitions = 0;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		char	   *column = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1);
		char	   *value = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 2);
		char	   *action = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 3);
		int			attindex = required_attindex(rel, column);
		Transition *t = tc->ntransitions > 0 ? &tc->transitions[tc->ntransitions - 1] : NULL;
		char	   *type = catalog_type(tc->resource, action);

		if (type == NULL)
			continue;			/* event type removed from the catalog since track() */
		if (t == NULL || t->attindex != attindex)
		{
			t = &tc->transitions[tc->ntransitions++];
			t->attindex = attindex;
			t->values = palloc(sizeof(char *) * SPI_processed);
			t->types = palloc(sizeof(char *) * SPI_processed);
		}
		t->values[t->nvalues] = value;
		t->types[t->nvalues] = type;
		t->nvalues++;
	}
}

/*
 * Which kinds of change some enabled webhook subscribes to.  Computed with
 * the configuration and dropped with it: any change to the webhooks
 * invalidates every table's entry.
 */
static void
compute_wanted(TableCapture *tc)
{
	int			i,
				j;

	tc->created_wanted = tc->created_type && webhooks_type_wanted(tc->created_type);
	tc->deleted_wanted = tc->deleted_type && webhooks_type_wanted(tc->deleted_type);
	tc->update_wanted = tc->updated_type && webhooks_type_wanted(tc->updated_type);
	for (i = 0; i < tc->ntransitions && !tc->update_wanted; i++)
		for (j = 0; j < tc->transitions[i].nvalues && !tc->update_wanted; j++)
			tc->update_wanted = webhooks_type_wanted(tc->transitions[i].types[j]);
}

/* Build the capture configuration of a table from tracked_tables. */
static void
load_table_capture(TableCapture *tc, Relation rel)
{
	WebhooksOwnerState owner;
	MemoryContext old;
	HeapTuple	row;
	TupleDesc	rowdesc;
	bool		isnull;
	char	   *id_column;
	Datum		exclude;
	bool		exclude_null;

	if (tc->mcxt == NULL)
		tc->mcxt = AllocSetContextCreate(CacheMemoryContext, "webhooks tracked table",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(tc->mcxt);
	tc->valid = true;			/* an invalidation during the load clears it */

	webhooks_as_owner_begin(&owner, true);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	old = MemoryContextSwitchTo(tc->mcxt);
	if (!fetch_tracking_row(rel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not tracked by webhooks",
						RelationGetRelationName(rel)),
				 errdetail("The trigger webhooks._capture() was attached without webhooks.track()."),
				 errhint("Use SELECT webhooks.track('%s', '<resource>'); to attach it.",
						 RelationGetRelationName(rel))));
	row = SPI_tuptable->vals[0];
	rowdesc = SPI_tuptable->tupdesc;
	tc->resource = SPI_getvalue(row, rowdesc, 1);
	id_column = SPI_getvalue(row, rowdesc, 2);
	if (id_column == NULL)
	{
		id_column = SPI_getvalue(row, rowdesc, 3);
		tc->scope = WEBHOOKS_SCOPE_SPACE;
	}
	else
		tc->scope = WEBHOOKS_SCOPE_SITE;
	exclude = SPI_getbinval(row, rowdesc, 4, &isnull);
	exclude_null = isnull;
	exclude = exclude_null ? (Datum) 0 : datumCopy(exclude, false, -1);

	tc->id_attindex = id_column ? required_attindex(rel, id_column) : -1;
	tc->created_type = catalog_type(tc->resource, "created");
	tc->updated_type = catalog_type(tc->resource, "updated");
	tc->deleted_type = catalog_type(tc->resource, "deleted");
	load_columns(tc, rel, exclude, exclude_null);
	load_transitions(tc, rel);
	compute_wanted(tc);

	MemoryContextSwitchTo(old);
	SPI_finish();
	webhooks_as_owner_end(&owner);
}

static TableCapture *
table_capture_for(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	bool		found;
	TableCapture *tc;

	if (table_cache == NULL)
		create_table_cache();
	tc = hash_search(table_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		tc->mcxt = NULL;
		tc->valid = false;
	}
	if (!tc->valid)
	{
		PG_TRY();
		{
			load_table_capture(tc, rel);
		}
		PG_CATCH();
		{
			tc->valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	return tc;
}

/* A row, deformed once for everything the trigger needs from it. */
typedef struct Row
{
	Datum	   *values;
	bool	   *nulls;
} Row;

static void
deform_row(Relation rel, HeapTuple tuple, Row *row)
{
	int			natts = RelationGetDescr(rel)->natts;

	row->values = palloc(sizeof(Datum) * natts);
	row->nulls = palloc(sizeof(bool) * natts);
	heap_deform_tuple(tuple, RelationGetDescr(rel), row->values, row->nulls);
}

/* Did the column change?  Compares contents, not just TOAST pointers. */
static bool
column_changed(Form_pg_attribute att, const Row *old, const Row *new, int i)
{
	if (old->nulls[i] || new->nulls[i])
		return old->nulls[i] != new->nulls[i];
	if (datumIsEqual(old->values[i], new->values[i], att->attbyval, att->attlen))
		return false;
	if (att->attlen == -1)
	{
		struct varlena *a = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(old->values[i]));
		struct varlena *b = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(new->values[i]));

		return VARSIZE_ANY_EXHDR(a) != VARSIZE_ANY_EXHDR(b) ||
			memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) != 0;
	}
	return true;
}

/* The row as a JSON object; only the flagged columns if only is not NULL. */
static void
append_row_json(StringInfo buf, TableCapture *tc, const Row *row, const bool *only)
{
	bool		first = true;
	int			i;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < tc->natts; i++)
	{
		if (!tc->in_payload[i] || (only && !only[i]))
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		appendBinaryStringInfo(buf, tc->columns[i].key, tc->columns[i].keylen);
		webhooks_append_value(buf, row->values[i], row->nulls[i], &tc->columns[i]);
	}
	appendStringInfoChar(buf, '}');
}

static bool
row_id(TableCapture *tc, Relation rel, const Row *row, int64 *id)
{
	int			i = tc->id_attindex;

	if (i < 0 || row->nulls[i])
		return false;
	switch (TupleDescAttr(RelationGetDescr(rel), i)->atttypid)
	{
		case INT2OID:
			*id = DatumGetInt16(row->values[i]);
			break;
		case INT4OID:
			*id = DatumGetInt32(row->values[i]);
			break;
		default:
			*id = DatumGetInt64(row->values[i]);
			break;
	}
	return true;
}

/*
 * The JSON of a changed row, built the first time an event of the row is
 * wanted by some webhook (and only then): the row, and for updates the old
 * values of the changed columns.
 */
typedef struct RowJson
{
	TableCapture *tc;
	const Row  *row;			/* NEW, or OLD for deletes */
	const Row  *old;			/* updates only */
	const bool *changed;		/* updates only */
	bool		built;
	StringInfoData data;
	StringInfoData previous;
} RowJson;

static void
build_row_json(RowJson *json)
{
	if (json->built)
		return;
	initStringInfo(&json->data);
	append_row_json(&json->data, json->tc, json->row, NULL);
	if (json->old)
	{
		initStringInfo(&json->previous);
		append_row_json(&json->previous, json->tc, json->old, json->changed);
	}
	json->built = true;
}

/* Queue one event for a row if any webhook wants it. */
static void
queue_row_event(TableCapture *tc, Relation rel, const char *type, RowJson *json)
{
	WebhooksEvent ev;
	int64		id;
	bool		has_id = row_id(tc, rel, json->row, &id);
	StringInfoData payload;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.has_site = has_id && tc->scope == WEBHOOKS_SCOPE_SITE;
	ev.site_id = ev.has_site ? id : 0;
	ev.has_space = has_id && tc->scope == WEBHOOKS_SCOPE_SPACE;
	ev.space_id = ev.has_space ? id : 0;
	ev.nwebhooks = webhooks_match(type, tc->scope, ev.has_site, ev.site_id,
								  ev.has_space, ev.space_id, &ev.webhook_ids);
	if (ev.nwebhooks == 0)
		return;

	build_row_json(json);
	webhooks_new_event_id(&ev.id);
	ev.created_at = GetCurrentTimestamp();
	initStringInfo(&payload);
	webhooks_append_envelope_head(&payload, &ev);
	appendBinaryStringInfo(&payload, json->data.data, json->data.len);
	if (json->old)
	{
		appendStringInfoString(&payload, ",\"previous\":");
		appendBinaryStringInfo(&payload, json->previous.data, json->previous.len);
	}
	webhooks_append_envelope_tail(&payload, &ev);
	ev.payload = &payload;
	webhooks_enqueue_buffered(&ev);
}

/* The events a transition column fires for this update, if any. */
static const char *
transition_type(TableCapture *tc, Transition *t, const Row *new)
{
	char	   *value;
	int			i;

	if (new->nulls[t->attindex])
		return NULL;
	value = webhooks_value_text(new->values[t->attindex], &tc->columns[t->attindex]);
	for (i = 0; i < t->nvalues; i++)
		if (strcmp(t->values[i], value) == 0)
			return t->types[i];
	return NULL;
}

static void
capture_update(TableCapture *tc, Relation rel, HeapTuple oldtuple, HeapTuple newtuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Row			old,
				new;
	bool	   *changed = palloc0(sizeof(bool) * Max(desc->natts, 1));
	bool		any = false;
	bool		fired = false;
	RowJson		json;
	int			i;

	deform_row(rel, oldtuple, &old);
	deform_row(rel, newtuple, &new);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && column_changed(att, &old, &new, i))
			changed[i] = any = true;
	}
	if (!any)
		return;					/* an UPDATE that changes nothing fires nothing */

	memset(&json, 0, sizeof(json));
	json.tc = tc;
	json.row = &new;
	json.old = &old;
	json.changed = changed;
	for (i = 0; i < tc->ntransitions; i++)
	{
		Transition *t = &tc->transitions[i];
		const char *type;

		if (!changed[t->attindex] || (type = transition_type(tc, t, &new)) == NULL)
			continue;
		queue_row_event(tc, rel, type, &json);
		fired = true;
	}
	if (!fired && tc->updated_type)
		queue_row_event(tc, rel, tc->updated_type, &json);
}

static void
capture_insert_or_delete(TableCapture *tc, Relation rel, HeapTuple tuple, const char *type)
{
	Row			row;
	RowJson		json;

	deform_row(rel, tuple, &row);
	memset(&json, 0, sizeof(json));
	json.tc = tc;
	json.row = &row;
	queue_row_event(tc, rel, type, &json);
}

static void
check_trigger_context(FunctionCallInfo fcinfo)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks._capture() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks._capture() must be an AFTER ... FOR EACH ROW trigger"),
				 errhint("Attach it with webhooks.track().")));
}

/*
 * The trigger.  Cheap when nothing is subscribed: the switch and the
 * webhooks come from the per-backend cache, and a row is only turned into
 * JSON once some webhook wants its event.
 */
Datum
webhooks_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TableCapture *tc;

	check_trigger_context(fcinfo);
	if (!webhooks_switch_on())
		PG_RETURN_POINTER(NULL);

	rel = trigdata->tg_relation;
	tc = table_capture_for(rel);
	/* nothing subscribed to this kind of change: not even a look at the row */
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (tc->created_wanted)
			capture_insert_or_delete(tc, rel, trigdata->tg_trigtuple, tc->created_type);
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		if (tc->deleted_wanted)
			capture_insert_or_delete(tc, rel, trigdata->tg_trigtuple, tc->deleted_type);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		if (tc->update_wanted)
			capture_update(tc, rel, trigdata->tg_trigtuple, trigdata->tg_newtuple);
	}
	PG_RETURN_POINTER(NULL);
}

PG_FUNCTION_INFO_V1(webhooks_capture_wanted);

/*
 * webhooks._capture_wanted(tbl) → boolean: the WHEN clause of the capture
 * trigger.  PostgreSQL evaluates it as each row changes and queues the row
 * for the AFTER trigger only when it is true, so a tracked table whose
 * events nobody subscribed to (or any table while the switch is off) does
 * not pay for queueing, re-fetching and calling the trigger on every row.
 * The table's configuration is loaded here if this backend has not yet
 * (the trigger itself only runs when the statement ends, too late for the
 * statement's other rows).  A partition's trigger names its parent, whose
 * configuration it shares.
 */
Datum
webhooks_capture_wanted(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	TableCapture *tc = NULL;

	if (!webhooks_switch_on())
		PG_RETURN_BOOL(false);
	if (table_cache != NULL)
		tc = hash_search(table_cache, &relid, HASH_FIND, NULL);
	if (tc == NULL || !tc->valid)
	{
		/* the statement's DML already holds a lock on the table (or a partition of it) */
		Relation	rel = relation_open(relid, AccessShareLock);

		tc = table_capture_for(rel);
		relation_close(rel, NoLock);
	}
	PG_RETURN_BOOL(tc->created_wanted || tc->deleted_wanted || tc->update_wanted);
}

static void
emit_check_id(const char *type, const char *what, WebhooksScope scope,
			  WebhooksScope wanted, bool given)
{
	if (given && scope != wanted)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type \"%s\" belongs to %s and takes no %s",
						type, scope == WEBHOOKS_SCOPE_SITE ? "sites" : "spaces", what)));
}

/*
 * webhooks.emit(event_type, data, site_id, space_id) → uuid: queue an
 * event that is not a row change.  NULL when no webhook wants it.
 */
Datum
webhooks_emit(PG_FUNCTION_ARGS)
{
	WebhooksEvent ev;
	char	   *type;
	WebhooksScope scope;
	StringInfoData payload;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event type must not be null")));
	type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	scope = webhooks_event_scope(type);
	if (scope == WEBHOOKS_SCOPE_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event type \"%s\"", type),
				 errhint("SELECT name FROM webhooks.event_types lists the event types.")));
	emit_check_id(type, "site_id", scope, WEBHOOKS_SCOPE_SITE, !PG_ARGISNULL(2));
	emit_check_id(type, "space_id", scope, WEBHOOKS_SCOPE_SPACE, !PG_ARGISNULL(3));

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.has_site = !PG_ARGISNULL(2);
	ev.site_id = ev.has_site ? PG_GETARG_INT64(2) : 0;
	ev.has_space = !PG_ARGISNULL(3);
	ev.space_id = ev.has_space ? PG_GETARG_INT64(3) : 0;
	if (!webhooks_switch_on())
		PG_RETURN_NULL();
	ev.nwebhooks = webhooks_match(type, scope, ev.has_site, ev.site_id,
								  ev.has_space, ev.space_id, &ev.webhook_ids);
	if (ev.nwebhooks == 0)
		PG_RETURN_NULL();

	webhooks_new_event_id(&ev.id);
	ev.created_at = GetCurrentTimestamp();
	initStringInfo(&payload);
	webhooks_append_envelope_head(&payload, &ev);
	if (PG_ARGISNULL(1))
		appendStringInfoString(&payload, "{}");
	else
	{
		Jsonb	   *data = PG_GETARG_JSONB_P(1);

		appendStringInfoString(&payload, JsonbToCString(NULL, &data->root, VARSIZE(data)));
	}
	webhooks_append_envelope_tail(&payload, &ev);
	ev.payload = &payload;
	webhooks_enqueue(&ev);
	{
		pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

		memcpy(result, &ev.id, sizeof(pg_uuid_t));
		PG_RETURN_UUID_P(result);
	}
}
