# pg-webhooks: built with PGXS.
#   make && sudo make install      build and install the extension
#   make installcheck              pg_regress suite (sql/ + expected/) against a running server
#   bash test/run                  everything, on a throw-away cluster (see README)

EXTENSION   = webhooks
MODULE_big  = webhooks
OBJS        = src/webhooks.o src/settings.o src/subscriptions.o src/capture.o \
              src/payload.o src/queue.o src/signature.o src/http.o src/launcher.o \
              src/worker.o
SHLIB_LINK  = -lcurl
DATA        = sql/webhooks--0.1.0.sql
REGRESS     = catalog webhooks_api capture cms security signature
REGRESS_OPTS = --load-extension=webhooks

PG_CONFIG  ?= pg_config
PG_CFLAGS  += -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
              -Wno-missing-field-initializers -Werror

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track headers: every object depends on ours.
$(OBJS): src/webhooks.h src/http.h
