/*
 * webhooks.c
 *     Entry point of the pg-webhooks library: _PG_init hands off to each
 *     subsystem's own initialisation and owns nothing else.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "webhooks.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* pg_upgrade loads libraries to check them; do nothing then */
	if (IsBinaryUpgrade)
		return;
	webhooks_settings_init();
	webhooks_subscriptions_init();
	webhooks_capture_init();
	webhooks_launcher_init();
}
