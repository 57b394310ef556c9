/*
 * settings.c
 *     The webhooks.* configuration parameters (GUCs).
 *
 * All are PGC_SIGHUP: set them in postgresql.conf or with ALTER SYSTEM and
 * reload; the worker picks them up between two rounds without dropping
 * requests in flight.  Values that need parsing (the retry schedule, the
 * allowed networks) are checked by a check hook, so a bad value is refused
 * at reload with a clear message instead of breaking the worker.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <limits.h>

#include "utils/guc.h"
#include "utils/memutils.h"

#include "webhooks.h"

int			webhooks_max_connections = 32;
int			webhooks_timeout_ms = 10000;
int			webhooks_connect_timeout_ms = 5000;
int			webhooks_batch_size = 1000;
int			webhooks_retention_s = 7 * 24 * 3600;
int			webhooks_secret_overlap_s = 24 * 3600;
int			webhooks_disable_after_s = 5 * 24 * 3600;
int			webhooks_disable_min_attempts = 10;
int			webhooks_launcher_naptime_ms = 10000;
char	   *webhooks_retry_schedule_string = NULL;
char	   *webhooks_allowed_networks_string = NULL;
char	   *webhooks_ca_file = NULL;

/* Parsed forms, set by the assign hooks. */
WebhooksRetrySchedule *webhooks_retry_schedule = NULL;
WebhooksNetworkList *webhooks_allowed_networks = NULL;

#define DEFAULT_RETRY_SCHEDULE "5s, 5min, 30min, 2h, 5h, 10h, 10h"

/* "5s", "5min", "2h", "1d", "250ms" → milliseconds; -1 if not a duration. */
static int64
parse_duration_ms(const char *s)
{
	char	   *end;
	double		value = strtod(s, &end);
	static const struct
	{
		const char *unit;
		double		ms;
	}			units[] = {
		{"ms", 1}, {"s", 1000}, {"sec", 1000}, {"min", 60000}, {"m", 60000},
		{"h", 3600000}, {"d", 86400000}
	};
	int			i;

	if (end == s || value < 0)
		return -1;
	while (*end == ' ')
		end++;
	for (i = 0; i < lengthof(units); i++)
		if (strcmp(end, units[i].unit) == 0)
			return (int64) (value * units[i].ms);
	return -1;
}

static bool
check_retry_schedule(char **newval, void **extra, GucSource source)
{
	WebhooksRetrySchedule *schedule;
	char	   *copy = pstrdup(*newval);
	char	   *item;
	char	   *saveptr = NULL;
	int			n = 0;

	schedule = malloc(sizeof(WebhooksRetrySchedule));
	if (schedule == NULL)
		return false;
	for (item = strtok_r(copy, ",", &saveptr); item; item = strtok_r(NULL, ",", &saveptr))
	{
		int64		ms;

		while (*item == ' ')
			item++;
		for (char *e = item + strlen(item); e > item && e[-1] == ' '; e--)
			e[-1] = '\0';
		if (*item == '\0')
			continue;
		ms = parse_duration_ms(item);
		if (ms < 0 || ms > (int64) 30 * 86400000)
		{
			GUC_check_errdetail("\"%s\" is not a delay such as 500ms, 5s, 5min, 2h or 1d (at most 30d).", item);
			free(schedule);
			return false;
		}
		if (n >= WEBHOOKS_MAX_RETRIES)
		{
			GUC_check_errdetail("At most %d retries can be scheduled.", WEBHOOKS_MAX_RETRIES);
			free(schedule);
			return false;
		}
		schedule->delays_ms[n++] = ms;
	}
	schedule->nretries = n;
	*extra = schedule;
	return true;
}

static void
assign_retry_schedule(const char *newval, void *extra)
{
	webhooks_retry_schedule = (WebhooksRetrySchedule *) extra;
}

/* Parse "a.b.c.d/n" or "x::y/n" (the prefix length is optional). */
static bool
parse_cidr(const char *text, WebhooksNetwork *net)
{
	char		addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t		len = slash ? (size_t) (slash - text) : strlen(text);
	int			maxbits;
	char	   *end;

	if (len == 0 || len > INET6_ADDRSTRLEN)
		return false;
	memcpy(addr, text, len);
	addr[len] = '\0';
	memset(net, 0, sizeof(*net));
	if (inet_pton(AF_INET, addr, net->addr) == 1)
	{
		net->family = AF_INET;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, addr, net->addr) == 1)
	{
		net->family = AF_INET6;
		maxbits = 128;
	}
	else
		return false;
	net->bits = maxbits;
	if (slash)
	{
		long		bits = strtol(slash + 1, &end, 10);

		if (end == slash + 1 || *end != '\0' || bits < 0 || bits > maxbits)
			return false;
		net->bits = (int) bits;
	}
	return true;
}

static bool
check_allowed_networks(char **newval, void **extra, GucSource source)
{
	WebhooksNetworkList *list;
	char	   *copy = pstrdup(*newval);
	char	   *item;
	char	   *saveptr = NULL;

	list = malloc(sizeof(WebhooksNetworkList));
	if (list == NULL)
		return false;
	list->n = 0;
	for (item = strtok_r(copy, ", ", &saveptr); item; item = strtok_r(NULL, ", ", &saveptr))
	{
		if (list->n >= WEBHOOKS_MAX_NETWORKS)
		{
			GUC_check_errdetail("At most %d networks can be listed.", WEBHOOKS_MAX_NETWORKS);
			free(list);
			return false;
		}
		if (!parse_cidr(item, &list->nets[list->n]))
		{
			GUC_check_errdetail("\"%s\" is not a network such as 127.0.0.1/32 or fd00::/8.", item);
			free(list);
			return false;
		}
		list->n++;
	}
	*extra = list;
	return true;
}

static void
assign_allowed_networks(const char *newval, void *extra)
{
	webhooks_allowed_networks = (WebhooksNetworkList *) extra;
}

static void
define_int(const char *name, const char *desc, int *var, int boot, int min, int max, int flags)
{
	DefineCustomIntVariable(name, desc, NULL, var, boot, min, max,
							PGC_SIGHUP, flags, NULL, NULL, NULL);
}

void
webhooks_settings_init(void)
{
	define_int("webhooks.max_connections",
			   "Requests the delivery worker of a database has in flight at once.",
			   &webhooks_max_connections, 32, 1, 1024, 0);
	define_int("webhooks.timeout", "Time limit for a whole request.",
			   &webhooks_timeout_ms, 10000, 100, 300000, GUC_UNIT_MS);
	define_int("webhooks.connect_timeout", "Time limit for connecting to a webhook URL.",
			   &webhooks_connect_timeout_ms, 5000, 100, 300000, GUC_UNIT_MS);
	define_int("webhooks.batch_size", "Deliveries claimed or recorded in one transaction.",
			   &webhooks_batch_size, 1000, 1, 100000, 0);
	define_int("webhooks.retention", "How long finished deliveries and their events are kept.",
			   &webhooks_retention_s, 7 * 24 * 3600, 1, INT_MAX, GUC_UNIT_S);
	define_int("webhooks.secret_overlap",
			   "How long the previous secret keeps signing after rotate_secret().",
			   &webhooks_secret_overlap_s, 24 * 3600, 0, INT_MAX, GUC_UNIT_S);
	define_int("webhooks.disable_after",
			   "A webhook whose deliveries all failed for this long is disabled.",
			   &webhooks_disable_after_s, 5 * 24 * 3600, 1, INT_MAX, GUC_UNIT_S);
	define_int("webhooks.disable_min_attempts",
			   "Failed attempts needed, besides webhooks.disable_after, to disable a webhook.",
			   &webhooks_disable_min_attempts, 10, 1, INT_MAX, 0);
	define_int("webhooks.launcher_naptime",
			   "How often the launcher looks for databases without a worker.",
			   &webhooks_launcher_naptime_ms, 10000, 100, 3600000, GUC_UNIT_MS);

	DefineCustomStringVariable("webhooks.retry_schedule",
							   "Delays between attempts after the first, e.g. '5s, 5min, 30min'.",
							   NULL, &webhooks_retry_schedule_string, DEFAULT_RETRY_SCHEDULE,
							   PGC_SIGHUP, 0, check_retry_schedule, assign_retry_schedule, NULL);
	DefineCustomStringVariable("webhooks.allowed_networks",
							   "Private, loopback or link-local networks webhooks may be sent to (CIDR list).",
							   NULL, &webhooks_allowed_networks_string, "",
							   PGC_SIGHUP, 0, check_allowed_networks, assign_allowed_networks, NULL);
	DefineCustomStringVariable("webhooks.ca_file",
							   "CA certificates to verify HTTPS receivers with, instead of the system's.",
							   NULL, &webhooks_ca_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("webhooks");
}
