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
#include "common/pg_prng.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

#include "webhooks.h"

/*
 * Does any of the eight bytes of w need escaping in a JSON string: a
 * control character (below 0x20), '"' or '\\'?  The classic "has a zero
 * byte" bit trick, exact for the question "any byte?"; bytes of 0x80 and
 * above (UTF-8) never match.
 */
static inline bool
word_needs_escape(uint64 w)
{
	const uint64 ones = UINT64CONST(0x0101010101010101);
	const uint64 high = UINT64CONST(0x8080808080808080);
	uint64		quote = w ^ (ones * '"');
	uint64		backslash = w ^ (ones * '\\');

	return ((((quote - ones) & ~quote) |
			 ((backslash - ones) & ~backslash) |
			 ((w - ones * 0x20) & ~w)) & high) != 0;
}

/*
 * Append len bytes of str as a JSON string, with escape_json()'s escapes,
 * but copying runs of characters that need no escaping in one go: CMS rows
 * are mostly long plain text, and this runs for every column of every
 * captured row.
 */
void
webhooks_append_json_text(StringInfo buf, const char *str, int len)
{
	const unsigned char *p = (const unsigned char *) str;
	const unsigned char *end = p + len;
	const unsigned char *run = p;

	enlargeStringInfo(buf, len + 2);
	buf->data[buf->len++] = '"';
	for (; p < end; p++)
	{
		/* eight plain bytes at a time */
		while (end - p >= 8)
		{
			uint64		w;

			memcpy(&w, p, sizeof(w));
			if (word_needs_escape(w))
				break;
			p += 8;
		}
		if (p >= end)
			break;
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		if (p > run)
			appendBinaryStringInfo(buf, (const char *) run, p - run);
		switch (*p)
		{
			case '"':
				appendBinaryStringInfo(buf, "\\\"", 2);
				break;
			case '\\':
				appendBinaryStringInfo(buf, "\\\\", 2);
				break;
			case '\b':
				appendBinaryStringInfo(buf, "\\b", 2);
				break;
			case '\f':
				appendBinaryStringInfo(buf, "\\f", 2);
				break;
			case '\n':
				appendBinaryStringInfo(buf, "\\n", 2);
				break;
			case '\r':
				appendBinaryStringInfo(buf, "\\r", 2);
				break;
			case '\t':
				appendBinaryStringInfo(buf, "\\t", 2);
				break;
			default:
				appendStringInfo(buf, "\\u%04x", *p);
				break;
		}
		run = p + 1;
	}
	if (p > run)
		appendBinaryStringInfo(buf, (const char *) run, p - run);
	appendStringInfoChar(buf, '"');
}

/* Append a NUL-terminated string as a JSON string. */
void
webhooks_append_json_string(StringInfo buf, const char *str)
{
	webhooks_append_json_text(buf, str, strlen(str));
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
	col->keylen = key.len;
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

/*
 * Integers are written without their output function (which pallocs its
 * result): the same digits, straight into the buffer.
 */
static bool
append_integer(StringInfo buf, Datum value, Oid typid)
{
	char		digits[MAXINT8LEN + 1];
	int			len;

	switch (typid)
	{
		case INT2OID:
			len = pg_itoa(DatumGetInt16(value), digits);
			break;
		case INT4OID:
			len = pg_ltoa(DatumGetInt32(value), digits);
			break;
		case INT8OID:
			len = pg_lltoa(DatumGetInt64(value), digits);
			break;
		default:
			return false;
	}
	appendBinaryStringInfo(buf, digits, len);
	return true;
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
			if (append_integer(buf, value, col->typid))
				return;
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

				webhooks_append_json_string(buf, JsonEncodeDateTime(dtbuf, value, col->typid, &utc));
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
			if (col->typid == TEXTOID || col->typid == VARCHAROID)
			{
				/* their output function is a copy of the bytes: skip it */
				text	   *t = DatumGetTextPP(value);

				webhooks_append_json_text(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				return;
			}
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
 * Event ids are version 7 UUIDs (RFC 9562): 48 bits of Unix milliseconds,
 * 12 bits of sub-millisecond time (the RFC's method 3), then 62 random
 * bits.  The "floor" of a time (the rest zero) sorts below every id made at
 * or after it, which is how old events are found by the primary key.
 */
static uint64
unix_ms(TimestampTz ts)
{
	return (uint64) Max(ts / 1000 + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000, 0);
}

void
webhooks_event_id_floor(TimestampTz ts, pg_uuid_t *id)
{
	uint64		ms = unix_ms(ts);
	int			i;

	memset(id, 0, sizeof(*id));
	for (i = 0; i < 6; i++)
		id->data[i] = (unsigned char) (ms >> (40 - 8 * i));
}

/*
 * A new event id.  The ids one backend makes strictly increase, even
 * within a millisecond or when the clock steps back (the time part then
 * counts on from the last id): the events' primary key only ever appends
 * at its right edge, where a B-tree insert is cheapest and pages split
 * 90/10 instead of in halves.  The random bits make ids of different
 * backends unique; they are not secrets, so they come from a per-backend
 * generator seeded once from pg_strong_random rather than from the
 * system's cryptographic source each time.
 */
void
webhooks_new_event_id(pg_uuid_t *id)
{
	static uint64 last_tick = 0;	/* ms << 12 | 1/4096ths of a ms */
	static bool seeded = false;
	static pg_prng_state prng;
	TimestampTz now = GetCurrentTimestamp();
	uint64		tick = (unix_ms(now) << 12) | (uint64) ((now % 1000 + 1000) % 1000 * 4096 / 1000);
	uint64		random;
	int			i;

	if (!seeded)
	{
		if (!pg_prng_strong_seed(&prng))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bytes for event ids")));
		seeded = true;
	}
	if (tick <= last_tick)
		tick = last_tick + 1;
	last_tick = tick;
	random = pg_prng_uint64(&prng);

	for (i = 0; i < 6; i++)
		id->data[i] = (unsigned char) (tick >> (52 - 8 * i));
	id->data[6] = 0x70 | (unsigned char) ((tick >> 8) & 0x0f);	/* version 7 */
	id->data[7] = (unsigned char) (tick & 0xff);
	for (i = 8; i < 16; i++)
		id->data[i] = (unsigned char) (random >> (56 - 8 * (i - 8)));
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

/* Write value as exactly width decimal digits, zero-padded, at out. */
static void
put_digits(char *out, int value, int width)
{
	int			i;

	for (i = width - 1; i >= 0; i--)
	{
		out[i] = (char) ('0' + value % 10);
		value /= 10;
	}
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
	if (tm.tm_year < 0 || tm.tm_year > 9999)
	{
		appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
						 tm.tm_year, tm.tm_mon, tm.tm_mday,
						 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
		return;
	}
	/* the usual case, without printf: this runs for every event */
	{
		char		out[] = "\"0000-00-00T00:00:00.000000Z\"";

		put_digits(out + 1, tm.tm_year, 4);
		put_digits(out + 6, tm.tm_mon, 2);
		put_digits(out + 9, tm.tm_mday, 2);
		put_digits(out + 12, tm.tm_hour, 2);
		put_digits(out + 15, tm.tm_min, 2);
		put_digits(out + 18, tm.tm_sec, 2);
		put_digits(out + 21, (int) fsec, 6);
		appendBinaryStringInfo(buf, out, sizeof(out) - 1);
	}
}

static void
append_optional_id(StringInfo buf, bool present, int64 id)
{
	if (present)
		append_integer(buf, Int64GetDatum(id), INT8OID);
	else
		appendBinaryStringInfo(buf, "null", 4);
}

/* The id in its canonical text form (as uuid_out writes it, without a palloc). */
static void
append_uuid(StringInfo buf, const pg_uuid_t *id)
{
	static const char hex[] = "0123456789abcdef";
	char		out[36];
	int			i,
				o = 0;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[id->data[i] >> 4];
		out[o++] = hex[id->data[i] & 0x0f];
	}
	appendBinaryStringInfo(buf, out, sizeof(out));
}

/* Everything up to and including "data": the caller appends the data. */
void
webhooks_append_envelope_head(StringInfo buf, const WebhooksEvent *ev)
{
	appendStringInfoString(buf, "{\"id\":\"");
	append_uuid(buf, &ev->id);
	appendStringInfoString(buf, "\",\"type\":");
	webhooks_append_json_string(buf, ev->type);
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
