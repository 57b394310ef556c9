/*
 * subscriptions.c
 *     Per-backend cache of what decides whether a change is queued: the
 *     account switch, the event catalog and the enabled webhooks.
 *
 * The capture trigger asks this cache on every row, so it must answer
 * without touching the database.  It is loaded with SPI on first use and
 * dropped when any backend commits a change to webhooks.webhooks,
 * webhooks.settings or webhooks.tracked_tables: statement triggers on those
 * tables call webhooks._invalidate_cache(), which sends a relcache
 * invalidation for the "anchor" table webhooks.webhooks.  That message is
 * transactional (delivered at commit, and at once to the sending backend),
 * needs no shared memory, and so works without shared_preload_libraries.
 *
 * Also owns running SQL as the extension's owner with a pinned search_path,
 * which is how the capture path reads and writes the webhooks schema on
 * behalf of CMS roles that have no rights on it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_invalidate_cache);

/* One enabled webhook, as far as matching needs it. */
typedef struct Subscription
{
	int64		id;
	int			nevents;
	char	  **events;			/* exact names, "resource.*" or "*" */
	int			nsites;			/* -1: all sites */
	int64	   *sites;
	int			nspaces;		/* -1: all spaces */
	int64	   *spaces;
} Subscription;

typedef struct EventTypeEntry
{
	char		name[NAMEDATALEN];
	WebhooksScope scope;
} EventTypeEntry;

static MemoryContext cache_context = NULL;
static bool cache_valid = false;
static uint64 invalidation_count = 0;
static Oid	anchor_relid = InvalidOid;
static Oid	owner_id = InvalidOid;
static bool switch_on = false;
static HTAB *event_types = NULL;
static Subscription *subscriptions = NULL;
static int	nsubscriptions = 0;

/* Relcache callback: any change to the anchor (or a full reset) drops all. */
static void
subscriptions_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == anchor_relid || anchor_relid == InvalidOid)
	{
		cache_valid = false;
		invalidation_count++;
	}
}

void
webhooks_subscriptions_init(void)
{
	CacheRegisterRelcacheCallback(subscriptions_invalidate, (Datum) 0);
}

/* The OID of webhooks.webhooks, or InvalidOid while not yet known. */
Oid
webhooks_anchor_relid(void)
{
	return anchor_relid;
}

static Oid
lookup_anchor_relid(void)
{
	Oid			nsp = get_namespace_oid(WEBHOOKS_SCHEMA, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(WEBHOOKS_ANCHOR_TABLE, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"webhooks\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION webhooks;")));
	return relid;
}

static Oid
lookup_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Run what follows as the owner of the extension's tables, and with
 * search_path pinned to pg_catalog if asked (setting it has a cost: the
 * per-row enqueue runs a plan prepared under the pinned path instead),
 * until webhooks_as_owner_end().  Both are undone by transaction abort if
 * an error escapes in between.
 */
void
webhooks_as_owner_begin(WebhooksOwnerState *state, bool pin_search_path)
{
	if (!OidIsValid(owner_id))
	{
		Oid			relid = lookup_anchor_relid();

		owner_id = lookup_owner(relid);
	}
	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	SetUserIdAndSecContext(owner_id,
						   state->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	state->save_nestlevel = 0;
	if (!pin_search_path)
		return;
	state->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

void
webhooks_as_owner_end(WebhooksOwnerState *state)
{
	if (state->save_nestlevel > 0)
		AtEOXact_GUC(false, state->save_nestlevel);
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/*
 * Run a read-only query through SPI and come back to the caller's memory
 * context: SPI leaves its own procedure context current after a call,
 * and what the caches copy out of the result must not live there.
 */
void
webhooks_spi_select(const char *sql, int nargs, Oid *argtypes, Datum *args)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 0);

	MemoryContextSwitchTo(caller);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "webhooks: query failed (%s): %s", SPI_result_code_string(rc), sql);
}

/* Copy a one-dimensional int8[] into the cache; NULL → -1 ("all"). */
static int
copy_int8_array(HeapTuple tuple, TupleDesc desc, int attno, int64 **out)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, attno, &isnull);
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	*out = NULL;
	if (isnull)
		return -1;
	arr = DatumGetArrayTypeP(d);
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	*out = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
		(*out)[i] = nulls[i] ? 0 : DatumGetInt64(elems[i]);
	return n;
}

static int
copy_text_array(HeapTuple tuple, TupleDesc desc, int attno, char ***out)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, attno, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	*out = NULL;
	if (isnull)
		return 0;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	*out = palloc(sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
		(*out)[i] = nulls[i] ? pstrdup("") : TextDatumGetCString(elems[i]);
	return n;
}

static void
load_switch(void)
{
	bool		isnull;

	webhooks_spi_select("SELECT enabled FROM webhooks.settings", 0, NULL, NULL);
	switch_on = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
		!isnull;
}

static void
load_event_types(void)
{
	HASHCTL		ctl;
	uint64		i;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(EventTypeEntry);
	ctl.hcxt = cache_context;
	event_types = hash_create("webhooks event types", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	webhooks_spi_select("SELECT name, scope = 'site' FROM webhooks.event_types", 0, NULL, NULL);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		char	   *name = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1);
		bool		isnull;
		bool		is_site = DatumGetBool(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
		EventTypeEntry *entry;

		if (strlen(name) >= NAMEDATALEN)
			continue;
		entry = hash_search(event_types, name, HASH_ENTER, NULL);
		entry->scope = is_site ? WEBHOOKS_SCOPE_SITE : WEBHOOKS_SCOPE_SPACE;
	}
}

static void
load_subscriptions(void)
{
	uint64		i;

	webhooks_spi_select("SELECT id, events, sites, spaces FROM webhooks.webhooks "
						"WHERE enabled ORDER BY id", 0, NULL, NULL);
	nsubscriptions = (int) SPI_processed;
	subscriptions = palloc0(sizeof(Subscription) * Max(nsubscriptions, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Subscription *sub = &subscriptions[i];
		bool		isnull;

		sub->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		sub->nevents = copy_text_array(tuple, desc, 2, &sub->events);
		sub->nsites = copy_int8_array(tuple, desc, 3, &sub->sites);
		sub->nspaces = copy_int8_array(tuple, desc, 4, &sub->spaces);
	}
}

/* (Re)load everything into a fresh memory context. */
static void
load_cache(void)
{
	uint64		seen = invalidation_count;
	WebhooksOwnerState owner;
	MemoryContext old;

	if (cache_context == NULL)
		cache_context = AllocSetContextCreate(CacheMemoryContext,
											  "webhooks subscriptions",
											  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(cache_context);
	event_types = NULL;
	subscriptions = NULL;
	nsubscriptions = 0;

	anchor_relid = lookup_anchor_relid();
	owner_id = lookup_owner(anchor_relid);

	webhooks_as_owner_begin(&owner, true);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	old = MemoryContextSwitchTo(cache_context);
	load_switch();
	load_event_types();
	load_subscriptions();
	MemoryContextSwitchTo(old);
	SPI_finish();
	webhooks_as_owner_end(&owner);

	/* An invalidation that arrived while loading means load again next time. */
	cache_valid = (seen == invalidation_count);
}

/* Is the account switch on?  Loads the cache if needed. */
bool
webhooks_switch_on(void)
{
	if (!cache_valid)
		load_cache();
	return switch_on;
}

WebhooksScope
webhooks_event_scope(const char *type)
{
	EventTypeEntry *entry;

	if (!cache_valid)
		load_cache();
	if (strlen(type) >= NAMEDATALEN)
		return WEBHOOKS_SCOPE_UNKNOWN;
	entry = hash_search(event_types, type, HASH_FIND, NULL);
	return entry ? entry->scope : WEBHOOKS_SCOPE_UNKNOWN;
}

/* Does one "events" entry cover this event type? */
static bool
event_pattern_matches(const char *pattern, const char *type)
{
	size_t		len = strlen(pattern);

	if (strcmp(pattern, "*") == 0 || strcmp(pattern, type) == 0)
		return true;
	/* "page.*" covers "page.<anything>" */
	return len >= 2 && pattern[len - 1] == '*' && pattern[len - 2] == '.' &&
		strncmp(pattern, type, len - 1) == 0;
}

static bool
id_filter_matches(int n, const int64 *ids, bool has_id, int64 id)
{
	int			i;

	if (n < 0)
		return true;			/* no filter */
	if (!has_id)
		return false;
	for (i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static bool
subscription_matches(const Subscription *sub, const char *type, WebhooksScope scope,
					 bool has_site, int64 site_id, bool has_space, int64 space_id)
{
	int			i;

	if (scope == WEBHOOKS_SCOPE_SITE &&
		!id_filter_matches(sub->nsites, sub->sites, has_site, site_id))
		return false;
	if (scope == WEBHOOKS_SCOPE_SPACE &&
		!id_filter_matches(sub->nspaces, sub->spaces, has_space, space_id))
		return false;
	for (i = 0; i < sub->nevents; i++)
		if (event_pattern_matches(sub->events[i], type))
			return true;
	return false;
}

/* Does any enabled webhook subscribe to this event type (sites aside)? */
bool
webhooks_type_wanted(const char *type)
{
	int			i,
				j;

	if (!cache_valid)
		load_cache();
	for (i = 0; i < nsubscriptions; i++)
		for (j = 0; j < subscriptions[i].nevents; j++)
			if (event_pattern_matches(subscriptions[i].events[j], type))
				return true;
	return false;
}

/*
 * The enabled webhooks that want this event; their ids are palloc'd in the
 * caller's memory context.  Returns how many.  Does not look at the switch.
 */
int
webhooks_match(const char *type, WebhooksScope scope,
			   bool has_site, int64 site_id, bool has_space, int64 space_id,
			   int64 **ids)
{
	int			n = 0;
	int			i;

	if (!cache_valid)
		load_cache();
	*ids = NULL;
	for (i = 0; i < nsubscriptions; i++)
	{
		if (!subscription_matches(&subscriptions[i], type, scope,
								  has_site, site_id, has_space, space_id))
			continue;
		if (*ids == NULL)
			*ids = palloc(sizeof(int64) * nsubscriptions);
		(*ids)[n++] = subscriptions[i].id;
	}
	return n;
}

/*
 * Statement trigger on the configuration tables: every backend drops its
 * cache when this transaction commits.
 */
Datum
webhooks_invalidate_cache(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhooks._invalidate_cache() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(lookup_anchor_relid());
	PG_RETURN_POINTER(NULL);
}
