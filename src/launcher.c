/*
 * launcher.c
 *     The launcher background worker, the shared memory it shares with the
 *     per-database delivery workers, and the ways backends reach them.
 *
 * One launcher per cluster (registered when the library is in
 * shared_preload_libraries) starts one delivery worker per database.  It
 * reads pg_database (a shared catalog, so it needs no database of its own)
 * and starts a worker for every database that accepts connections and has
 * no worker yet.  A worker that finds no extension in its database says so
 * in its slot and exits; the launcher then leaves that database alone until
 * CREATE EXTENSION webhooks wakes it (the install script calls
 * webhooks._wake_worker()).  So databases without the extension cost one
 * short-lived process per cluster start, not one per nap.
 *
 * Per-database state machine of a slot:
 *   empty → starting (launcher registered a worker) → running (worker
 *   attached) → empty (worker exited: restarted after a back-off that
 *   grows with consecutive failures), or → no_extension (left alone until
 *   woken), or paused (DROP/RENAME DATABASE in progress: not restarted).
 *
 * Backends reach the workers in two ways: a commit that queued events sets
 * the worker's latch (so delivery starts within milliseconds, without a
 * poll timer), and DROP DATABASE, ALTER DATABASE ... RENAME and CREATE
 * DATABASE ... TEMPLATE first stop the worker connected to that database,
 * which would otherwise make them fail with "database is being accessed by
 * other users".
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "webhooks.h"

PG_FUNCTION_INFO_V1(webhooks_wake_worker_sql);
PG_FUNCTION_INFO_V1(webhooks_worker_status);

#define MAX_DATABASES 128
#define START_TIMEOUT_MS 30000	/* a "starting" slot older than this is retried */
#define MAX_BACKOFF_MS 60000

typedef struct DatabaseSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;			/* worker, 0 if none */
	PGPROC	   *proc;			/* the worker's PGPROC, for its latch */
	bool		starting;
	TimestampTz start_requested;
	bool		no_extension;
	bool		paused;
	TimestampTz paused_at;
	bool		clean_exit;
	int			failures;		/* consecutive unclean exits */
	TimestampTz not_before;		/* back-off after a failure */
} DatabaseSlot;

typedef struct WebhooksShared
{
	slock_t		mutex;
	PGPROC	   *launcher;
	DatabaseSlot slots[MAX_DATABASES];
} WebhooksShared;

static WebhooksShared *shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static ProcessUtility_hook_type prev_process_utility_hook = NULL;
static bool wake_at_commit = false;
static DatabaseSlot *my_slot = NULL;

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */

static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg-webhooks", sizeof(WebhooksShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(WebhooksShared));
		SpinLockInit(&shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

#if PG_VERSION_NUM >= 150000
static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WebhooksShared)));
}
#endif

/* The slot of a database, or a new one; call with the mutex held. */
static DatabaseSlot *
slot_for(Oid dboid, bool create)
{
	int			i;
	DatabaseSlot *free_slot = NULL;

	for (i = 0; i < MAX_DATABASES; i++)
	{
		if (shared->slots[i].dboid == dboid)
			return &shared->slots[i];
		if (free_slot == NULL && shared->slots[i].dboid == InvalidOid)
			free_slot = &shared->slots[i];
	}
	if (!create || free_slot == NULL)
		return NULL;
	memset(free_slot, 0, sizeof(DatabaseSlot));
	free_slot->dboid = dboid;
	return free_slot;
}

static void
wake_launcher(void)
{
	PGPROC	   *launcher;

	SpinLockAcquire(&shared->mutex);
	launcher = shared->launcher;
	SpinLockRelease(&shared->mutex);
	if (launcher)
		SetLatch(&launcher->procLatch);
}

/*
 * Wake this database's worker; if it has none, tell the launcher (the
 * extension may just have been created).
 */
static void
wake_database(Oid dboid)
{
	PGPROC	   *proc = NULL;
	DatabaseSlot *slot;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	slot = slot_for(dboid, false);
	if (slot)
	{
		slot->no_extension = false;
		proc = slot->pid > 0 ? slot->proc : NULL;
	}
	SpinLockRelease(&shared->mutex);
	if (proc)
		SetLatch(&proc->procLatch);
	else
		wake_launcher();
}

/* Events were queued in this transaction: wake the worker when it commits. */
void
webhooks_wake_at_commit(void)
{
	wake_at_commit = true;
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				wake_database(MyDatabaseId);
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* webhooks._wake_worker(): wake the worker when this transaction commits. */
Datum
webhooks_wake_worker_sql(PG_FUNCTION_ARGS)
{
	webhooks_wake_at_commit();
	PG_RETURN_VOID();
}

/* webhooks.worker_status() → (preloaded, worker_pid) */
Datum
webhooks_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, true};
	DatabaseSlot *slot;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = BoolGetDatum(shared != NULL);
	values[1] = Int32GetDatum(0);
	if (shared)
	{
		SpinLockAcquire(&shared->mutex);
		slot = slot_for(MyDatabaseId, false);
		if (slot && slot->pid > 0)
		{
			values[1] = Int32GetDatum(slot->pid);
			nulls[1] = false;
		}
		SpinLockRelease(&shared->mutex);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ---------------------------------------------------------------------
 * Worker side of the slots
 * ---------------------------------------------------------------------
 */

static void
worker_detach(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	my_slot->pid = 0;
	my_slot->proc = NULL;
	my_slot->starting = false;
	if (my_slot->clean_exit)
		my_slot->failures = 0;
	else
	{
		my_slot->failures++;
		my_slot->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  Min(1000 << Min(my_slot->failures, 6), MAX_BACKOFF_MS));
	}
	SpinLockRelease(&shared->mutex);
	my_slot = NULL;
	wake_launcher();
}

/*
 * Take this database's slot.  False if another worker already has it: a
 * database is served by exactly one worker.
 */
bool
webhooks_worker_attach(Oid dboid)
{
	DatabaseSlot *slot;
	bool		ok = false;

	SpinLockAcquire(&shared->mutex);
	slot = slot_for(dboid, true);
	if (slot && (slot->pid == 0 || slot->pid == MyProcPid))
	{
		slot->pid = MyProcPid;
		slot->proc = MyProc;
		slot->starting = false;
		slot->clean_exit = false;
		ok = true;
	}
	SpinLockRelease(&shared->mutex);
	if (ok)
	{
		my_slot = slot;
		before_shmem_exit(worker_detach, (Datum) 0);
	}
	return ok;
}

/* The worker is about to exit on purpose: no back-off, maybe no restart. */
void
webhooks_worker_exiting(bool no_extension)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	my_slot->clean_exit = true;
	my_slot->no_extension = no_extension;
	SpinLockRelease(&shared->mutex);
}

/* A worker that ran well for a while is no longer "failing". */
void
webhooks_worker_healthy(void)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	my_slot->failures = 0;
	SpinLockRelease(&shared->mutex);
}

/* ---------------------------------------------------------------------
 * Stopping a database's worker for DROP/RENAME DATABASE
 * ---------------------------------------------------------------------
 */

static void
set_paused(Oid dboid, bool paused, pid_t *pid)
{
	DatabaseSlot *slot;

	*pid = 0;
	SpinLockAcquire(&shared->mutex);
	slot = slot_for(dboid, paused);
	if (slot)
	{
		if (paused && !slot->paused)
			slot->paused_at = GetCurrentTimestamp();
		slot->paused = paused;
		*pid = slot->pid;
	}
	SpinLockRelease(&shared->mutex);
}

/* Stop the worker of a database and keep it stopped; waits up to 10 s. */
static void
pause_database(Oid dboid)
{
	pid_t		pid;
	int			i;

	set_paused(dboid, true, &pid);
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (i = 0; i < 1000; i++)
	{
		set_paused(dboid, true, &pid);
		if (pid == 0)
			return;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
	elog(WARNING, "pg-webhooks worker %d did not stop within 10 seconds", (int) pid);
}

static void
resume_database(Oid dboid)
{
	pid_t		pid;

	set_paused(dboid, false, &pid);
	wake_launcher();
}

/* The database a utility statement needs without other connections, if any. */
static Oid
database_needing_exclusive_use(Node *stmt)
{
	const char *name = NULL;

	if (IsA(stmt, DropdbStmt))
		name = ((DropdbStmt *) stmt)->dbname;
	else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		name = ((RenameStmt *) stmt)->subname;
	else if (IsA(stmt, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) stmt)->options)
		{
			DefElem    *opt = (DefElem *) lfirst(lc);

			if (strcmp(opt->defname, "template") == 0 && opt->arg)
				name = defGetString(opt);
		}
	}
	else if (IsA(stmt, AlterDatabaseStmt))
	{
		ListCell   *lc;

		foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				name = ((AlterDatabaseStmt *) stmt)->dbname;
	}
	return name ? get_database_oid(name, true) : InvalidOid;
}

/*
 * Stops the worker of a database that the statement needs to itself.  A
 * database that DROP DATABASE removed stays paused (the launcher forgets
 * it once the drop has committed; resuming now would start a worker that
 * finds it gone); after any other statement, or an error, it resumes.  A
 * worker started while RENAME or CREATE DATABASE ... TEMPLATE is still
 * running waits for their lock on the database, so resuming at once is safe.
 */
static void
process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dboid = shared ? database_needing_exclusive_use(pstmt->utilityStmt) : InvalidOid;

	if (OidIsValid(dboid))
		pause_database(dboid);
	PG_TRY();
	{
		if (prev_process_utility_hook)
			prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
									  params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (OidIsValid(dboid))
			resume_database(dboid);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (OidIsValid(dboid) && !IsA(pstmt->utilityStmt, DropdbStmt))
		resume_database(dboid);
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

typedef struct DatabaseInfo
{
	Oid			oid;
	char		name[NAMEDATALEN];
} DatabaseInfo;

/* Databases that accept connections and are not templates. */
static List *
connectable_databases(void)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		MemoryContext old;
		DatabaseInfo *info;

		if (!db->datallowconn || db->datistemplate)
			continue;
		old = MemoryContextSwitchTo(caller);
		info = palloc(sizeof(DatabaseInfo));
		info->oid = db->oid;
		strlcpy(info->name, NameStr(db->datname), NAMEDATALEN);
		result = lappend(result, info);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

static bool
start_worker(const DatabaseInfo *db)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "webhooks");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "webhooks_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg-webhooks worker for database %s", db->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg-webhooks worker");
	worker.bgw_main_arg = ObjectIdGetDatum(db->oid);
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/* Should the launcher start a worker for this database now? Mutex held. */
static bool
needs_worker(DatabaseSlot *slot, TimestampTz now)
{
	if (slot->pid > 0 || slot->no_extension || slot->paused || now < slot->not_before)
		return false;
	if (slot->starting &&
		!TimestampDifferenceExceeds(slot->start_requested, now, START_TIMEOUT_MS))
		return false;
	return true;
}

#define PAUSE_TIMEOUT_MS 60000	/* a pause a DROP DATABASE left, if it did not commit */

/*
 * Forget slots of databases that are gone; resume paused ones whose
 * database is still there long after the pause (a DROP DATABASE that
 * failed at commit).  Mutex held.
 */
static void
forget_dropped(List *dbs, TimestampTz now)
{
	int			i;

	for (i = 0; i < MAX_DATABASES; i++)
	{
		DatabaseSlot *slot = &shared->slots[i];
		ListCell   *lc;
		bool		exists = false;

		if (slot->dboid == InvalidOid || slot->pid > 0)
			continue;
		foreach(lc, dbs)
			if (((DatabaseInfo *) lfirst(lc))->oid == slot->dboid)
				exists = true;
		if (!exists)
			memset(slot, 0, sizeof(DatabaseSlot));
		else if (slot->paused &&
				 TimestampDifferenceExceeds(slot->paused_at, now, PAUSE_TIMEOUT_MS))
			slot->paused = false;
	}
}

static void
start_missing_workers(void)
{
	List	   *dbs = connectable_databases();
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	static bool warned_no_slots = false;

	foreach(lc, dbs)
	{
		DatabaseInfo *db = (DatabaseInfo *) lfirst(lc);
		DatabaseSlot *slot;
		bool		start;

		SpinLockAcquire(&shared->mutex);
		slot = slot_for(db->oid, true);
		start = slot && needs_worker(slot, now);
		if (start)
		{
			slot->starting = true;
			slot->start_requested = now;
		}
		SpinLockRelease(&shared->mutex);
		if (!start)
			continue;
		if (!start_worker(db))
		{
			SpinLockAcquire(&shared->mutex);
			slot->starting = false;
			SpinLockRelease(&shared->mutex);
			if (!warned_no_slots)
				ereport(WARNING,
						(errmsg("pg-webhooks could not start a worker for database \"%s\"", db->name),
						 errhint("Raise max_worker_processes: pg-webhooks needs one worker per database plus its launcher.")));
			warned_no_slots = true;
		}
	}
	SpinLockAcquire(&shared->mutex);
	forget_dropped(dbs, now);
	SpinLockRelease(&shared->mutex);
	list_free_deep(dbs);
}

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&shared->mutex);
	if (shared->launcher == MyProc)
		shared->launcher = NULL;
	SpinLockRelease(&shared->mutex);
}

void
webhooks_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pg-webhooks launcher");

	SpinLockAcquire(&shared->mutex);
	shared->launcher = MyProc;
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(launcher_detach, (Datum) 0);
	ereport(LOG, (errmsg("pg-webhooks launcher started")));

	for (;;)
	{
		start_missing_workers();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 webhooks_launcher_naptime_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

static void
register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "webhooks");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "webhooks_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg-webhooks launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg-webhooks launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * From _PG_init.  Every backend gets the commit callback; shared memory,
 * the launcher and the utility hook only exist when preloaded.
 */
void
webhooks_launcher_init(void)
{
	RegisterXactCallback(xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
#else
	RequestAddinShmemSpace(MAXALIGN(sizeof(WebhooksShared)));
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = process_utility;
	register_launcher();
}
