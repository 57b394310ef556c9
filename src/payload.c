/*
 * payload.c
 *     The JSON body of a webhook: the envelope and the row inside it.
 *
 * The envelope follows the Standard Webhooks payload shape:
 *   {"id":..., "type":..., "timestamp":..., "site_id":..., "space_id":...,
 *    "data":{...}, "previous":{...}, "test":false}
 * Rows are written column by column straight from their Datums, without
 * going through SQL, because this runs once per changed row on the CMS's
 * write path.  Values come out as to_json() would write them, except that
 * timestamps with time zone are always in UTC, so a payload does not depend
 * on the TimeZone of the session that made the change.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

#include "webhooks.h"

/*
 * Append str as a JSON string.  Like escape_json(), but copies runs of
 * characters that need no escaping in one go: CMS rows are mostly long
 * plain text, and this runs for every column of every captured row.
 */
void
webhooks_append_json_string(StringInfo buf, const char *str)
{
	const unsigned char *p = (const unsigned char *) str;
	const unsigned char *run = p;

	appendStringInfoChar(buf, '"');
	for (;; p++)
	{
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		if (p > run)
			appendBinaryStringInfo(buf, (const char *) run, p - run);
		if (*p == '\0')
			break;
		switch (*p)
		{
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				appendStringInfo(buf, "\\u%04x", *p);
				break;
		}
		run = p + 1;
	}
	appendStringInfoChar(buf, '"');
}

/* Decide how a value of this (base) type is written as JSON. */
static WebhooksJsonKind
json_kind_for_type(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
			return WEBHOOKS_JSON_BOOL;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return WEBHOOKS_JSON_NUMBER;
		case JSONOID:
		case JSONBOID:
			return WEBHOOKS_JSON_RAW;
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return WEBHOOKS_JSON_DATETIME;
		default:
			break;
	}
	if (OidIsValid(get_element_type(typid)))
		return WEBHOOKS_JSON_ARRAY;
	if (type_is_rowtype(typid))
		return WEBHOOKS_JSON_COMPOSITE;
	return WEBHOOKS_JSON_STRING;
}

/*
 * Prepare the output of one column; everything is allocated in mcxt, the
 * memory context of the cache entry that owns the column.
 */
void
webhooks_column_out_init(WebhooksColumnOut *col, const char *name, Oid typid,
						 MemoryContext mcxt)
{
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	StringInfoData key;
	Oid			outfunc;
	bool		isvarlena;

	initStringInfo(&key);
	escape_json(&key, name);
	appendStringInfoChar(&key, ':');
	col->key = key.data;
	col->typid = getBaseType(typid);
	col->kind = json_kind_for_type(col->typid);
	getTypeOutputInfo(typid, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &col->output, mcxt);
	MemoryContextSwitchTo(old);
}

/* NaN and the infinities are not JSON numbers. */
static bool
is_json_number(const char *s)
{
	return (s[0] >= '0' && s[0] <= '9') ||
		(s[0] == '-' && s[1] >= '0' && s[1] <= '9');
}

/* Append the value as a JSON value. */
void
webhooks_append_value(StringInfo buf, Datum value, bool isnull,
					  WebhooksColumnOut *col)
{
	char		dtbuf[MAXDATELEN + 1];
	char	   *out;

	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	switch (col->kind)
	{
		case WEBHOOKS_JSON_BOOL:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		case WEBHOOKS_JSON_NUMBER:
			out = OutputFunctionCall(&col->output, value);
			if (is_json_number(out))
				appendStringInfoString(buf, out);
			else
				escape_json(buf, out);
			return;
		case WEBHOOKS_JSON_RAW:
			appendStringInfoString(buf, OutputFunctionCall(&col->output, value));
			return;
		case WEBHOOKS_JSON_DATETIME:
			{
				int			utc = 0;

				escape_json(buf, JsonEncodeDateTime(dtbuf, value, col->typid, &utc));
				return;
			}
		case WEBHOOKS_JSON_ARRAY:
			out = TextDatumGetCString(DirectFunctionCall1(array_to_json, value));
			appendStringInfoString(buf, out);
			return;
		case WEBHOOKS_JSON_COMPOSITE:
			out = TextDatumGetCString(DirectFunctionCall1(row_to_json, value));
			appendStringInfoString(buf, out);
			return;
		case WEBHOOKS_JSON_STRING:
			webhooks_append_json_string(buf, OutputFunctionCall(&col->output, value));
			return;
	}
}

/*
 * The value as text, the way transitions name it: as in the payload, but
 * without quotes (so a boolean is "true" or "false", not "t" or "f").
 */
char *
webhooks_value_text(Datum value, WebhooksColumnOut *col)
{
	if (col->kind == WEBHOOKS_JSON_BOOL)
		return pstrdup(DatumGetBool(value) ? "true" : "false");
	return OutputFunctionCall(&col->output, value);
}

/*
 * Event ids are version 7 UUIDs: 48 bits of Unix milliseconds, then random
 * bits; the "floor" of a time (the rest zero) sorts below every id made at
 * or after it, which is how old events are found by the primary key.  Ids
 * that grow with time keep the queue's primary key appending at its right
 * edge instead of splitting pages all over the index.
 */
void
webhooks_event_id_floor(TimestampTz ts, pg_uuid_t *id)
{
	uint64		ms = (uint64) Max(ts / 1000 + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000, 0);
	int			i;

	memset(id, 0, sizeof(*id));
	for (i = 0; i < 6; i++)
		id->data[i] = (unsigned char) (ms >> (40 - 8 * i));
}

void
webhooks_new_event_id(pg_uuid_t *id)
{
	webhooks_event_id_floor(GetCurrentTimestamp(), id);
	if (!pg_strong_random(id->data + 6, UUID_LEN - 6))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for an event id")));
	id->data[6] = (id->data[6] & 0x0f) | 0x70;	/* version 7 */
	id->data[8] = (id->data[8] & 0x3f) | 0x80;	/* RFC 9562 variant */
}

PG_FUNCTION_INFO_V1(webhooks_new_event_id_sql);

/* webhooks._new_event_id() → a version 7 UUID, as the capture path makes. */
Datum
webhooks_new_event_id_sql(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

	webhooks_new_event_id(id);
	PG_RETURN_UUID_P(id);
}

PG_FUNCTION_INFO_V1(webhooks_build_payload);

/*
 * webhooks._build_payload(id, type, site_id, space_id, data, test) → the
 * envelope around already-serialized JSON data, exactly as the capture
 * path writes it; used for test notifications.
 */
Datum
webhooks_build_payload(PG_FUNCTION_ARGS)
{
	WebhooksEvent ev;
	StringInfoData buf;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(4) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("id, type, data and test must not be null")));
	memset(&ev, 0, sizeof(ev));
	memcpy(&ev.id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	ev.type = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ev.has_site = !PG_ARGISNULL(2);
	ev.site_id = ev.has_site ? PG_GETARG_INT64(2) : 0;
	ev.has_space = !PG_ARGISNULL(3);
	ev.space_id = ev.has_space ? PG_GETARG_INT64(3) : 0;
	ev.test = PG_GETARG_BOOL(5);
	ev.created_at = GetCurrentTimestamp();
	initStringInfo(&buf);
	webhooks_append_envelope_head(&buf, &ev);
	appendStringInfoString(&buf, text_to_cstring(PG_GETARG_TEXT_PP(4)));
	webhooks_append_envelope_tail(&buf, &ev);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* ISO 8601 in UTC with microseconds, e.g. "2026-12-04T21:02:42.123456Z". */
void
webhooks_append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

static void
append_optional_id(StringInfo buf, bool present, int64 id)
{
	if (present)
		appendStringInfo(buf, INT64_FORMAT, id);
	else
		appendStringInfoString(buf, "null");
}

/* Everything up to and including "data": the caller appends the data. */
void
webhooks_append_envelope_head(StringInfo buf, const WebhooksEvent *ev)
{
	appendStringInfoString(buf, "{\"id\":\"");
	appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(uuid_out,
																	UUIDPGetDatum(&ev->id))));
	appendStringInfoString(buf, "\",\"type\":");
	escape_json(buf, ev->type);
	appendStringInfoString(buf, ",\"timestamp\":");
	webhooks_append_timestamp(buf, ev->created_at);
	appendStringInfoString(buf, ",\"site_id\":");
	append_optional_id(buf, ev->has_site, ev->site_id);
	appendStringInfoString(buf, ",\"space_id\":");
	append_optional_id(buf, ev->has_space, ev->space_id);
	appendStringInfoString(buf, ",\"data\":");
}

/* Closes the envelope after the data (and "previous", if any). */
void
webhooks_append_envelope_tail(StringInfo buf, const WebhooksEvent *ev)
{
	appendStringInfoString(buf, ev->test ? ",\"test\":true}" : ",\"test\":false}");
}
