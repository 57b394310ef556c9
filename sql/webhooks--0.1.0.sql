-- pg-webhooks 0.1.0: install script.
--
-- Owns every SQL object of the extension, all in schema "webhooks":
--   catalog      event_types (the 50 event types of the CMS, site or space scope)
--   settings     the account-wide on/off switch
--   webhooks     the subscriptions, validated by one trigger whatever path writes them
--   capture      tracked_tables + track()/untrack() + the C trigger function, emit()
--   queue        events: one row per captured change, read by the delivery worker
--   security     role webhooks_admin; nothing is granted to PUBLIC
\echo Use "CREATE EXTENSION webhooks" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Roles.  Roles are cluster-wide, so a second database that installs the
-- extension finds the role already there.
-- ---------------------------------------------------------------------------
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'webhooks_admin') THEN
        CREATE ROLE webhooks_admin NOLOGIN;
    END IF;
END
$roles$;

-- ---------------------------------------------------------------------------
-- Event catalog
-- ---------------------------------------------------------------------------
CREATE TABLE webhooks.event_types (
    name      text PRIMARY KEY
              CHECK (name ~ '^[a-z_]+\.[a-z_]+$'),
    scope     text NOT NULL CHECK (scope IN ('site', 'space')),
    resource  text NOT NULL GENERATED ALWAYS AS (split_part(name, '.', 1)) STORED,
    action    text NOT NULL GENERATED ALWAYS AS (split_part(name, '.', 2)) STORED,
    label_en  text NOT NULL,
    label_es  text NOT NULL
);
COMMENT ON TABLE webhooks.event_types IS 'The event types a webhook can subscribe to (site or space scope)';

INSERT INTO webhooks.event_types (name, scope, label_en, label_es) VALUES
    ('form_response.created',       'site',  'Form response created',        'Respuesta del formulario creado'),
    ('form_response.updated',       'site',  'Form response updated',        'Respuesta de formulario actualizada'),
    ('page.created',                'site',  'Page created',                 'Página creada'),
    ('page.deleted',                'site',  'Page deleted',                 'Página eliminada'),
    ('page.published',              'site',  'Page published',               'Página publicada'),
    ('page.unpublished',            'site',  'Page unpublished',             'Página despublicada'),
    ('page.updated',                'site',  'Page updated',                 'Página actualizada'),
    ('session.login',               'site',  'Login',                        'Inicio de sesión'),
    ('session.logout',              'site',  'Logout',                       'Cierre de sesión'),
    ('navigation.approved',         'site',  'Navigation approved',          'Navegación aprobada'),
    ('navigation.published',        'site',  'Navigation published',         'Navegación publicada'),
    ('navigation.review_requested', 'site',  'Navigation sent to review',    'Navegación enviada a revisión'),
    ('navigation.updated',          'site',  'Navigation updated',           'Navegación actualizada'),
    ('profile.updated',             'site',  'Profile updated',              'Perfil actualizado'),
    ('site.created',                'site',  'Site created',                 'Sitio creado'),
    ('site.deleted',                'site',  'Site deleted',                 'Sitio eliminado'),
    ('site.disabled',               'site',  'Site disabled',                'Sitio desactivado'),
    ('site.enabled',                'site',  'Site enabled',                 'Sitio habilitado'),
    ('site.hidden',                 'site',  'Site hidden',                  'Sitio oculto'),
    ('site.staged',                 'site',  'Site staged',                  'Sitio puesto en desarrollo'),
    ('site.visible',                'site',  'Site visible',                 'Sitio visible'),
    ('site.updated',                'site',  'Site updated',                 'Sitio actualizado'),
    ('template.approved',           'site',  'Templates approved',           'Templates aprobados'),
    ('template.review_requested',   'site',  'Templates sent to review',     'Templates enviados para su revisión'),
    ('template.updated',            'site',  'Templates updated',            'Templates actualizados'),
    ('theme.installed',             'site',  'Theme installed',              'Tema instalado'),
    ('theme.reset',                 'site',  'Theme restored',               'Tema restablecido'),
    ('theme.updated',               'site',  'Theme updated',                'Tema actualizado'),
    ('widget.approved',             'site',  'Widget approved',              'Widget aprobado'),
    ('widget.cloned',               'site',  'Widget cloned',                'Widget clonado'),
    ('widget.created',              'site',  'Widget created',               'Widget creado'),
    ('widget.published',            'site',  'Widget published',             'Widget publicado'),
    ('widget.restored',             'site',  'Widget restored',              'Widget restaurado'),
    ('widget.review_requested',     'site',  'Widget sent to review',        'Widget enviado a revisión'),
    ('widget.unpublished',          'site',  'Widget unpublished',           'Widget despublicado'),
    ('widget.updated',              'site',  'Widget updated',               'Widget actualizado'),
    ('category.created',            'space', 'Category created',             'Categoría creada'),
    ('category.deleted',            'space', 'Category deleted',             'Categoría eliminada'),
    ('category.updated',            'space', 'Category updated',             'Categoría actualizada'),
    ('entry.approved',              'space', 'Entry approved',               'Entrada aprobada'),
    ('entry.created',               'space', 'Entry created',                'Entrada creada'),
    ('entry.published',             'space', 'Entry published',              'Entrada publicada'),
    ('entry.review_requested',      'space', 'Entry sent to review',         'Entrada enviada a revisión'),
    ('entry.unpublished',           'space', 'Entry unpublished',            'Entrada despublicada'),
    ('entry.updated',               'space', 'Entry updated',                'Entrada actualizada'),
    ('space.created',               'space', 'Space created',                'Espacio creado'),
    ('space.updated',               'space', 'Space updated',                'Espacio actualizado'),
    ('type.created',                'space', 'Type created',                 'Tipo creado'),
    ('type.deleted',                'space', 'Type deleted',                 'Tipo eliminado'),
    ('type.updated',                'space', 'Type updated',                 'Tipo actualizado');

-- ---------------------------------------------------------------------------
-- C functions that the rest of the script relies on
-- ---------------------------------------------------------------------------

-- A Standard Webhooks secret: "whsec_" + base64 of 32 random bytes.
CREATE FUNCTION webhooks.generate_secret()
RETURNS text
AS 'MODULE_PATHNAME', 'webhooks_generate_secret'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.generate_secret() IS 'A new random signing secret in the Standard Webhooks format (whsec_...)';

-- Standard Webhooks signature: "v1," + base64(HMAC-SHA256(secret, id.timestamp.body)).
CREATE FUNCTION webhooks.sign(secret text, id text, "timestamp" bigint, body text)
RETURNS text
AS 'MODULE_PATHNAME', 'webhooks_sign'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION webhooks.sign(text, text, bigint, text) IS 'The webhook-signature value a receiver must compute for this id, timestamp and body';

-- Tells every backend's capture cache that subscriptions, the switch or the
-- tracked tables changed; sent at commit, like any cache invalidation.
CREATE FUNCTION webhooks._invalidate_cache()
RETURNS trigger
AS 'MODULE_PATHNAME', 'webhooks_invalidate_cache'
LANGUAGE C;

-- ---------------------------------------------------------------------------
-- The account-wide switch.  No row means off: the state after CREATE
-- EXTENSION, and a row only exists once someone flipped the switch, so
-- pg_dump can keep it without clashing with the install script.
-- ---------------------------------------------------------------------------
CREATE TABLE webhooks.settings (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks.settings IS 'Account-wide switch: no row or enabled = false means nothing is queued';
SELECT pg_catalog.pg_extension_config_dump('webhooks.settings', '');

CREATE TRIGGER settings_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks.settings
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._invalidate_cache();

CREATE FUNCTION webhooks.is_enabled()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT enabled FROM webhooks.settings), false) $$;
COMMENT ON FUNCTION webhooks.is_enabled() IS 'Whether webhooks are switched on for the account';

CREATE FUNCTION webhooks._set_enabled(on_off boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO webhooks.settings (singleton, enabled) VALUES (true, on_off)
    ON CONFLICT (singleton) DO UPDATE SET enabled = excluded.enabled, updated_at = now()
$$;

CREATE FUNCTION webhooks.enable()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM webhooks._set_enabled(true);
    IF NOT (SELECT preloaded FROM webhooks.worker_status()) THEN
        RAISE WARNING 'webhooks are switched on, but nothing will be delivered until the worker runs'
            USING DETAIL = 'Events are queued in webhooks.events; the delivery worker is not loaded.',
                  HINT = 'Add webhooks to shared_preload_libraries in postgresql.conf and restart PostgreSQL.';
    END IF;
END
$$;
COMMENT ON FUNCTION webhooks.enable() IS 'Switch webhooks on for the account: CMS changes start being queued';

CREATE FUNCTION webhooks.disable()
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT webhooks._set_enabled(false) $$;
COMMENT ON FUNCTION webhooks.disable() IS 'Switch webhooks off for the account: CMS changes are no longer queued';

-- ---------------------------------------------------------------------------
-- Webhooks (subscriptions)
-- ---------------------------------------------------------------------------
CREATE TABLE webhooks.webhooks (
    id                bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name              text NOT NULL,
    url               text NOT NULL,
    events            text[] NOT NULL,
    sites             bigint[],
    spaces            bigint[],
    headers           jsonb NOT NULL DEFAULT '{}',
    secret            text NOT NULL,
    previous_secret   text,
    secret_rotated_at timestamptz,
    enabled           boolean NOT NULL DEFAULT true,
    disabled_reason   text,
    disabled_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks.webhooks IS 'Registered webhooks: where to POST which events; every write is validated by webhooks._validate_webhook()';
COMMENT ON COLUMN webhooks.webhooks.events IS 'Event types: exact names, resource.* or *';
COMMENT ON COLUMN webhooks.webhooks.sites IS 'Site ids whose site events are sent; NULL means all sites';
COMMENT ON COLUMN webhooks.webhooks.spaces IS 'Space ids whose space events are sent; NULL means all spaces';
COMMENT ON COLUMN webhooks.webhooks.headers IS 'Custom request headers, a JSON object of name: value strings';
COMMENT ON COLUMN webhooks.webhooks.previous_secret IS 'The secret before the last rotation, still used to sign during webhooks.secret_overlap';
SELECT pg_catalog.pg_extension_config_dump('webhooks.webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.webhooks_id_seq', '');

-- Raises invalid_parameter_value (22023) with a hint; the one way the
-- validation below reports a bad field.
CREATE FUNCTION webhooks._invalid(message text, hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = message;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = message, HINT = hint;
END
$$;

CREATE FUNCTION webhooks._check_url(url text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    authority text;
    host      text;
    port      text;
BEGIN
    IF length(url) > 2048 THEN
        PERFORM webhooks._invalid(format('webhook URL is too long (%s characters)', length(url)),
                                  'A webhook URL may have at most 2048 characters.');
    END IF;
    -- spaces, control and non-ASCII characters: a URL on the wire is ASCII
    IF url ~ '[^\x21-\x7e]' THEN
        PERFORM webhooks._invalid('webhook URL must not contain spaces, control or non-ASCII characters',
                                  'Percent-encode them: a space is %20.');
    END IF;
    IF url !~* '^https?://' THEN
        PERFORM webhooks._invalid(format('webhook URL "%s" must use http or https', url),
                                  'Use a URL such as https://example.com/hooks.');
    END IF;
    IF strpos(url, '\') > 0 THEN
        PERFORM webhooks._invalid(format('webhook URL "%s" must not contain a backslash', url));
    END IF;
    authority := substring(url FROM '^[A-Za-z]+://([^/?#]*)');
    IF authority LIKE '%@%' THEN
        PERFORM webhooks._invalid('webhook URL must not contain a user name or password',
                                  'Send credentials in a custom header such as Authorization.');
    END IF;
    IF authority LIKE '[%' THEN
        -- an IPv6 literal: [address] or [address]:port
        IF authority !~ '^\[[0-9A-Fa-f:.]+\](:[0-9]*)?$' THEN
            PERFORM webhooks._invalid(format('webhook URL "%s" has an invalid IPv6 address', url));
        END IF;
        host := substring(authority FROM '^(\[[^]]*\])');
        port := substring(authority FROM '^\[[^]]*\]:(.*)$');
    ELSE
        host := split_part(authority, ':', 1);
        port := CASE WHEN strpos(authority, ':') > 0 THEN substr(authority, strpos(authority, ':') + 1) END;
    END IF;
    IF host = '' THEN
        PERFORM webhooks._invalid(format('webhook URL "%s" has no host', url));
    END IF;
    IF port IS NOT NULL AND (port !~ '^[0-9]{1,5}$' OR port::int NOT BETWEEN 1 AND 65535) THEN
        PERFORM webhooks._invalid(format('webhook URL "%s" has an invalid port', url),
                                  'A port is a number from 1 to 65535.');
    END IF;
    IF url LIKE '%#%' THEN
        PERFORM webhooks._invalid('webhook URL must not contain a fragment (#)',
                                  'Fragments are never sent to the server; remove it.');
    END IF;
END
$$;

CREATE FUNCTION webhooks._check_events(events text[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev text;
BEGIN
    IF events IS NULL OR cardinality(events) = 0 THEN
        PERFORM webhooks._invalid('a webhook needs at least one event',
                                  'List event types such as ''{page.published}'', ''{page.*}'' or ''{*}''.');
    END IF;
    IF array_ndims(events) > 1 THEN
        PERFORM webhooks._invalid('events must be a one-dimensional array');
    END IF;
    FOREACH ev IN ARRAY events LOOP
        IF ev IS NULL OR ev = '' THEN
            PERFORM webhooks._invalid('events must not contain NULL or empty entries');
        END IF;
        CONTINUE WHEN ev = '*';
        IF ev LIKE '%.*' THEN
            CONTINUE WHEN EXISTS (SELECT 1 FROM webhooks.event_types t
                                  WHERE t.resource = left(ev, -2));
            PERFORM webhooks._invalid(format('unknown event resource "%s"', ev),
                                      'SELECT DISTINCT resource FROM webhooks.event_types lists the resources.');
        END IF;
        CONTINUE WHEN EXISTS (SELECT 1 FROM webhooks.event_types t WHERE t.name = ev);
        PERFORM webhooks._invalid(format('unknown event type "%s"', ev),
                                  'SELECT name FROM webhooks.event_types lists the event types.');
    END LOOP;
END
$$;

CREATE FUNCTION webhooks._check_ids(ids bigint[], what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ids IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(ids) = 0 THEN
        PERFORM webhooks._invalid(format('%s must not be an empty array', what),
                                  format('Use NULL for all %s.', what));
    END IF;
    IF array_ndims(ids) > 1 THEN
        PERFORM webhooks._invalid(format('%s must be a one-dimensional array', what));
    END IF;
    IF array_position(ids, NULL) IS NOT NULL THEN
        PERFORM webhooks._invalid(format('%s must not contain NULL', what));
    END IF;
END
$$;

CREATE FUNCTION webhooks._check_headers(headers jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
BEGIN
    IF jsonb_typeof(headers) <> 'object' THEN
        PERFORM webhooks._invalid('headers must be a JSON object',
                                  'Use an object such as ''{"Authorization": "Bearer ..."}''.');
    END IF;
    IF length(headers::text) > 8192 THEN
        PERFORM webhooks._invalid('custom headers are too large',
                                  'All custom headers together may take at most 8192 bytes.');
    END IF;
    FOR h IN SELECT lower(key) AS key FROM jsonb_object_keys(headers) AS k(key)
             GROUP BY lower(key) HAVING count(*) > 1 LOOP
        PERFORM webhooks._invalid(format('header "%s" is given more than once', h.key),
                                  'Header names are case-insensitive; keep one of them.');
    END LOOP;
    FOR h IN SELECT key, value FROM jsonb_each(headers) LOOP
        IF h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
            PERFORM webhooks._invalid(format('invalid header name "%s"', h.key),
                                      'Header names are letters, digits and !#$%&''*+.^_`|~- only.');
        END IF;
        IF lower(h.key) IN ('content-type', 'content-length', 'user-agent', 'host',
                            'transfer-encoding', 'connection', 'expect')
           OR lower(h.key) LIKE 'webhook-%' THEN
            PERFORM webhooks._invalid(format('header "%s" is set by pg-webhooks and cannot be overridden', h.key),
                                      'Content-Type, User-Agent and the webhook-* headers are part of the delivery.');
        END IF;
        IF jsonb_typeof(h.value) <> 'string' THEN
            PERFORM webhooks._invalid(format('value of header "%s" must be a string', h.key));
        END IF;
        IF (h.value #>> '{}') ~ '[\r\n\x01-\x08\x0b\x0c\x0e-\x1f\x7f]' THEN
            PERFORM webhooks._invalid(format('value of header "%s" must not contain line breaks or control characters', h.key));
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION webhooks._check_secret(secret text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_length int;
BEGIN
    IF secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' OR length(secret) % 4 <> 2 THEN
        PERFORM webhooks._invalid('secret must be "whsec_" followed by base64',
                                  'Leave the secret NULL to have one generated.');
    END IF;
    key_length := length(decode(substr(secret, 7), 'base64'));
    IF key_length < 24 OR key_length > 64 THEN
        PERFORM webhooks._invalid(format('secret key must be 24 to 64 bytes, not %s', key_length),
                                  'Leave the secret NULL to have one generated.');
    END IF;
END
$$;

-- The one set of rules for a webhook row, whether written by
-- create_webhook(), rotate_secret() or a plain INSERT/UPDATE in psql.
CREATE FUNCTION webhooks._validate_webhook()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.name IS NULL OR NEW.url IS NULL OR NEW.events IS NULL OR NEW.enabled IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'not_null_violation',
            MESSAGE = format('webhook %s must not be null',
                             CASE WHEN NEW.name IS NULL THEN 'name'
                                  WHEN NEW.url IS NULL THEN 'url'
                                  WHEN NEW.events IS NULL THEN 'events'
                                  ELSE 'enabled' END);
    END IF;
    IF btrim(NEW.name) = '' OR length(NEW.name) > 200 THEN
        PERFORM webhooks._invalid('webhook name must have 1 to 200 characters');
    END IF;
    IF NEW.name ~ '[[:cntrl:]]' THEN
        PERFORM webhooks._invalid('webhook name must not contain control characters such as line breaks');
    END IF;
    PERFORM webhooks._check_url(NEW.url);
    PERFORM webhooks._check_events(NEW.events);
    PERFORM webhooks._check_ids(NEW.sites, 'sites');
    PERFORM webhooks._check_ids(NEW.spaces, 'spaces');
    NEW.headers := coalesce(NEW.headers, '{}');
    PERFORM webhooks._check_headers(NEW.headers);

    IF TG_OP = 'UPDATE' THEN
        IF NEW.id IS DISTINCT FROM OLD.id THEN
            PERFORM webhooks._invalid('the id of a webhook cannot be changed');
        END IF;
        NEW.created_at := OLD.created_at;
        NEW.updated_at := now();
        -- A new secret keeps the old one for the overlap window, so
        -- receivers can switch over without dropping deliveries.
        IF NEW.secret IS NULL OR NEW.secret IS DISTINCT FROM OLD.secret THEN
            NEW.previous_secret := OLD.secret;
            NEW.secret_rotated_at := now();
        END IF;
        IF NEW.enabled AND NOT OLD.enabled THEN
            NEW.disabled_reason := NULL;
            NEW.disabled_at := NULL;
        ELSIF OLD.enabled AND NOT NEW.enabled THEN
            NEW.disabled_at := coalesce(NEW.disabled_at, now());
            NEW.disabled_reason := coalesce(NEW.disabled_reason, 'disabled by ' || current_user);
        END IF;
    END IF;
    NEW.secret := coalesce(NEW.secret, webhooks.generate_secret());
    PERFORM webhooks._check_secret(NEW.secret);
    RETURN NEW;
END
$$;

CREATE TRIGGER webhooks_validate
    BEFORE INSERT OR UPDATE ON webhooks.webhooks
    FOR EACH ROW EXECUTE FUNCTION webhooks._validate_webhook();

CREATE TRIGGER webhooks_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks.webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._invalidate_cache();

CREATE FUNCTION webhooks.create_webhook(
    name    text,
    url     text,
    events  text[],
    sites   bigint[] DEFAULT NULL,
    spaces  bigint[] DEFAULT NULL,
    headers jsonb DEFAULT '{}',
    secret  text DEFAULT NULL,
    enabled boolean DEFAULT true)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO webhooks.webhooks AS w (name, url, events, sites, spaces, headers, secret, enabled)
    VALUES (create_webhook.name, create_webhook.url, create_webhook.events,
            create_webhook.sites, create_webhook.spaces, create_webhook.headers,
            create_webhook.secret, create_webhook.enabled)
    RETURNING w.id INTO new_id;
    IF NOT webhooks.is_enabled() THEN
        RAISE NOTICE 'webhooks are switched off for this account, so webhook % will not fire yet', new_id
            USING HINT = 'Run SELECT webhooks.enable(); to switch them on.';
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION webhooks.create_webhook(text, text, text[], bigint[], bigint[], jsonb, text, boolean)
    IS 'Register a webhook; returns its id. A NULL secret is generated.';

CREATE FUNCTION webhooks._webhook_not_found(webhook_id bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'no_data_found',
        MESSAGE = format('webhook %s does not exist', webhook_id),
        HINT = 'SELECT id, name FROM webhooks.webhooks lists the webhooks.';
END
$$;

CREATE FUNCTION webhooks.delete_webhook(id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM webhooks.webhooks w WHERE w.id = delete_webhook.id;
    IF NOT FOUND THEN
        PERFORM webhooks._webhook_not_found(delete_webhook.id);
    END IF;
END
$$;
COMMENT ON FUNCTION webhooks.delete_webhook(bigint) IS 'Delete a webhook';

CREATE FUNCTION webhooks.rotate_secret(id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_secret text;
BEGIN
    UPDATE webhooks.webhooks w SET secret = NULL
    WHERE w.id = rotate_secret.id
    RETURNING w.secret INTO new_secret;
    IF NOT FOUND THEN
        PERFORM webhooks._webhook_not_found(rotate_secret.id);
    END IF;
    RETURN new_secret;
END
$$;
COMMENT ON FUNCTION webhooks.rotate_secret(bigint)
    IS 'Give a webhook a new secret; the old one keeps signing too during webhooks.secret_overlap';

-- ---------------------------------------------------------------------------
-- The queue.  The writer appends captured events to webhooks.dispatch_queue
-- in rows of up to 32 (one heap tuple and one index entry for 32 changes,
-- their payloads compressed together); the delivery worker takes those rows,
-- moves each event to webhooks.event_store and fans it out into one
-- delivery per webhook that matched, in one transaction.  webhook_ids
-- records which webhooks matched when the change committed.
-- ---------------------------------------------------------------------------
CREATE TABLE webhooks.dispatch_queue (
    first_event   uuid PRIMARY KEY,
    event_ids     uuid[] NOT NULL,
    types         text[] NOT NULL,
    site_ids      bigint[] NOT NULL,
    space_ids     bigint[] NOT NULL,
    webhook_ids   bigint[] NOT NULL,
    payloads      json[] NOT NULL,
    created_ats   timestamptz[] NOT NULL
) WITH (toast_tuple_target = 8160);
-- keep a row in one heap tuple when it fits a page: moving the payloads to
-- TOAST would cost the writer a TOAST row and index entry per 2 kB
ALTER TABLE webhooks.dispatch_queue
    ALTER COLUMN event_ids SET STORAGE MAIN, ALTER COLUMN types SET STORAGE MAIN,
    ALTER COLUMN site_ids SET STORAGE MAIN, ALTER COLUMN space_ids SET STORAGE MAIN,
    ALTER COLUMN webhook_ids SET STORAGE MAIN, ALTER COLUMN payloads SET STORAGE MAIN,
    ALTER COLUMN created_ats SET STORAGE MAIN;
COMMENT ON TABLE webhooks.dispatch_queue IS
    'Captured events not yet fanned out into deliveries, up to 32 a row (smallest id first); see webhooks.events';

CREATE TABLE webhooks.event_store (
    id            uuid PRIMARY KEY,
    type          text NOT NULL,
    site_id       bigint,
    space_id      bigint,
    webhook_ids   bigint[] NOT NULL,
    payload       json NOT NULL,
    test          boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks.event_store IS 'Events fanned out into deliveries; see webhooks.events';

CREATE VIEW webhooks.events AS
SELECT id, type, site_id, space_id, webhook_ids, payload, test, created_at
FROM webhooks.event_store
UNION ALL
SELECT e.id, e.type, e.site_id, e.space_id, q.webhook_ids, e.payload, false, e.created_at
FROM webhooks.dispatch_queue q,
     unnest(q.event_ids, q.types, q.site_ids, q.space_ids, q.payloads, q.created_ats)
         AS e(id, type, site_id, space_id, payload, created_at);
COMMENT ON VIEW webhooks.events IS
    'Every captured event, fanned out or still queued; payload is the exact JSON body that is POSTed';
COMMENT ON COLUMN webhooks.events.webhook_ids IS 'The webhooks that matched the event when it was captured';

-- ---------------------------------------------------------------------------
-- Capture
-- ---------------------------------------------------------------------------
CREATE TABLE webhooks.tracked_tables (
    tbl           regclass PRIMARY KEY,
    resource      text NOT NULL,
    site_column   name,
    space_column  name,
    transitions   jsonb NOT NULL DEFAULT '{}',
    exclude       name[] NOT NULL DEFAULT '{}',
    tracked_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhooks.tracked_tables IS 'CMS tables whose changes fire events (see webhooks.track)';
SELECT pg_catalog.pg_extension_config_dump('webhooks.tracked_tables', '');

CREATE TRIGGER tracked_tables_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks.tracked_tables
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._invalidate_cache();

-- The capture trigger (C).  It reads its configuration from tracked_tables.
CREATE FUNCTION webhooks._capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'webhooks_capture'
LANGUAGE C;

-- Writes the events a statement buffered, when the statement ends (C).
-- Called by the WHEN clause of the capture trigger, as the role that writes
-- the table: EXECUTE is granted to PUBLIC below (without USAGE on the
-- schema nobody can call it by name; it only says whether events of a
-- table are wanted).  VOLATILE so that it is never folded into a constant.
CREATE FUNCTION webhooks._capture_wanted(tbl regclass)
RETURNS boolean
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'webhooks_capture_wanted';

CREATE FUNCTION webhooks._capture_flush()
RETURNS trigger
AS 'MODULE_PATHNAME', 'webhooks_capture_flush'
LANGUAGE C;

-- (Re)attach the two capture triggers: one per row, one per statement.
CREATE FUNCTION webhooks._attach_triggers(tbl regclass, attach boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trigger_name name;
BEGIN
    FOR trigger_name IN SELECT tgname FROM pg_trigger
                        WHERE tgrelid = tbl AND tgname IN ('webhooks_capture', 'webhooks_capture_flush')
                          AND tgparentid = 0 LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, tbl);
    END LOOP;
    IF attach THEN
        -- the WHEN clause skips rows of a table nobody subscribed to before
        -- PostgreSQL queues them for the trigger (see _capture_wanted)
        EXECUTE format('CREATE TRIGGER webhooks_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW WHEN (webhooks._capture_wanted(%L::regclass)) '
                       'EXECUTE FUNCTION webhooks._capture()', tbl, tbl::text);
        EXECUTE format('CREATE TRIGGER webhooks_capture_flush AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhooks._capture_flush()', tbl);
    END IF;
END
$$;

CREATE FUNCTION webhooks._check_column(tbl regclass, col name, purpose text, integer_only boolean)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col_type regtype;
BEGIN
    SELECT a.atttypid::regtype INTO col_type
    FROM pg_attribute a
    WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_column',
            MESSAGE = format('column "%s" of table %s does not exist', col, tbl),
            DETAIL = format('It was given as the %s.', purpose);
    END IF;
    IF integer_only AND col_type NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = format('column "%s" of table %s has type %s, not an integer type', col, tbl, col_type),
            DETAIL = format('The %s must be smallint, integer or bigint.', purpose);
    END IF;
END
$$;

-- The one set of rules for a tracked table, whether written by track() or
-- by hand: the caller must be allowed to create triggers on the table, and
-- every column, event type and transition must exist.  Also re-run after
-- ALTER TABLE on a tracked table (see _check_tracked_tables_after_ddl).
CREATE FUNCTION webhooks._validate_tracking()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    res_scope  text;
    t          record;
    m          record;
    col        name;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF NOT coalesce(has_table_privilege(OLD.tbl, 'TRIGGER'), true) THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('permission denied to stop tracking table %s', OLD.tbl),
                HINT = 'Only roles that may create triggers on the table (such as its owner) can change how it is tracked.';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.tbl IS NULL OR NEW.resource IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'table and resource must not be null';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = NEW.tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
            MESSAGE = format('%s is not a table', NEW.tbl),
            HINT = 'Only ordinary and partitioned tables can be tracked; track the table behind a view.';
    END IF;
    IF NOT has_table_privilege(NEW.tbl, 'TRIGGER') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('permission denied to track table %s', NEW.tbl),
            HINT = 'Only roles that may create triggers on the table (such as its owner) can change how it is tracked.';
    END IF;
    SELECT min(e.scope) INTO res_scope FROM webhooks.event_types e WHERE e.resource = NEW.resource;
    IF res_scope IS NULL THEN
        PERFORM webhooks._invalid(format('unknown resource "%s"', NEW.resource),
                                  'SELECT DISTINCT resource FROM webhooks.event_types lists the resources.');
    END IF;

    -- Where the event's site or space id comes from: the given column,
    -- else site_id/space_id, else id for the site and space resources.
    IF res_scope = 'site' THEN
        IF NEW.space_column IS NOT NULL THEN
            PERFORM webhooks._invalid(format('resource "%s" belongs to sites and takes no space column', NEW.resource));
        END IF;
        NEW.site_column := coalesce(NEW.site_column, CASE WHEN NEW.resource = 'site' THEN 'id' ELSE 'site_id' END);
        PERFORM webhooks._check_column(NEW.tbl, NEW.site_column, 'site column', true);
    ELSE
        IF NEW.site_column IS NOT NULL THEN
            PERFORM webhooks._invalid(format('resource "%s" belongs to spaces and takes no site column', NEW.resource));
        END IF;
        NEW.space_column := coalesce(NEW.space_column, CASE WHEN NEW.resource = 'space' THEN 'id' ELSE 'space_id' END);
        PERFORM webhooks._check_column(NEW.tbl, NEW.space_column, 'space column', true);
    END IF;

    NEW.transitions := coalesce(NEW.transitions, '{}');
    IF jsonb_typeof(NEW.transitions) <> 'object' THEN
        PERFORM webhooks._invalid('transitions must be a JSON object mapping columns to {value: action}',
                                  'For example ''{"status": {"published": "published"}}''.');
    END IF;
    FOR t IN SELECT key, value FROM jsonb_each(NEW.transitions) LOOP
        PERFORM webhooks._check_column(NEW.tbl, t.key::name, 'transition column', false);
        IF jsonb_typeof(t.value) <> 'object' OR t.value = '{}' THEN
            PERFORM webhooks._invalid(format('transition of column "%s" must be a non-empty JSON object of value: action', t.key));
        END IF;
        FOR m IN SELECT key, value FROM jsonb_each(t.value) LOOP
            IF jsonb_typeof(m.value) <> 'string' THEN
                PERFORM webhooks._invalid(format('action for value "%s" of column "%s" must be a string', m.key, t.key));
            END IF;
            IF NOT EXISTS (SELECT 1 FROM webhooks.event_types e
                           WHERE e.name = NEW.resource || '.' || (m.value #>> '{}')) THEN
                PERFORM webhooks._invalid(format('event type "%s.%s" does not exist', NEW.resource, m.value #>> '{}'),
                                          format('SELECT action FROM webhooks.event_types WHERE resource = %L lists the actions.', NEW.resource));
            END IF;
        END LOOP;
    END LOOP;

    NEW.exclude := coalesce(NEW.exclude, '{}');
    IF array_position(NEW.exclude, NULL) IS NOT NULL THEN
        PERFORM webhooks._invalid('exclude must not contain NULL');
    END IF;
    FOREACH col IN ARRAY NEW.exclude LOOP
        PERFORM webhooks._check_column(NEW.tbl, col, 'excluded column', false);
    END LOOP;
    NEW.tracked_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER tracked_tables_validate
    BEFORE INSERT OR UPDATE OR DELETE ON webhooks.tracked_tables
    FOR EACH ROW EXECUTE FUNCTION webhooks._validate_tracking();

CREATE FUNCTION webhooks.track(
    tbl          regclass,
    resource     text,
    site_column  name DEFAULT NULL,
    space_column name DEFAULT NULL,
    transitions  jsonb DEFAULT '{}',
    exclude      name[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    -- validated by webhooks._validate_tracking()
    INSERT INTO webhooks.tracked_tables AS tt (tbl, resource, site_column, space_column, transitions, exclude)
    VALUES (tbl, resource, site_column, space_column, transitions, exclude)
    ON CONFLICT ON CONSTRAINT tracked_tables_pkey DO UPDATE
        SET resource = excluded.resource, site_column = excluded.site_column,
            space_column = excluded.space_column, transitions = excluded.transitions,
            exclude = excluded.exclude;

    PERFORM webhooks._attach_triggers(tbl, true);
END
$$;
COMMENT ON FUNCTION webhooks.track(regclass, text, name, name, jsonb, name[])
    IS 'Fire events for the changes of a CMS table';

CREATE FUNCTION webhooks.untrack(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM webhooks.tracked_tables tt WHERE tt.tbl = untrack.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('table %s is not tracked', tbl),
            HINT = 'SELECT tbl FROM webhooks.tracked_tables lists the tracked tables.';
    END IF;
    PERFORM webhooks._attach_triggers(tbl, false);
END
$$;
COMMENT ON FUNCTION webhooks.untrack(regclass) IS 'Stop firing events for a CMS table';

-- A dropped CMS table leaves no configuration behind.
CREATE FUNCTION webhooks._forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM webhooks.tracked_tables
    WHERE tbl::oid IN (SELECT objid FROM pg_event_trigger_dropped_objects()
                       WHERE classid = 'pg_class'::regclass AND objsubid = 0);
END
$$;

CREATE EVENT TRIGGER webhooks_forget_dropped_tables ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION webhooks._forget_dropped_tables();

-- ALTER TABLE on a tracked table must leave its configuration valid:
-- dropping or renaming a column that track() names is refused, instead
-- of making every later write to the table fail.
CREATE FUNCTION webhooks._check_tracked_tables_after_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cmd   record;
    msg   text;
BEGIN
    FOR cmd IN SELECT DISTINCT c.objid FROM pg_event_trigger_ddl_commands() c
               JOIN webhooks.tracked_tables t ON t.tbl::oid = c.objid
               WHERE c.classid = 'pg_class'::regclass LOOP
        BEGIN
            UPDATE webhooks.tracked_tables SET tbl = tbl WHERE tbl::oid = cmd.objid;
        EXCEPTION WHEN undefined_column OR datatype_mismatch THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
                MESSAGE = format('table %s is tracked by webhooks and this change would break it: %s',
                                 cmd.objid::regclass, msg),
                HINT = 'Call webhooks.track() again without that column (or webhooks.untrack()) first.';
        END;
    END LOOP;
END
$$;

CREATE EVENT TRIGGER webhooks_check_tracked_tables ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION webhooks._check_tracked_tables_after_ddl();

CREATE FUNCTION webhooks.emit(event_type text, data jsonb, site_id bigint DEFAULT NULL, space_id bigint DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'webhooks_emit'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION webhooks.emit(text, jsonb, bigint, bigint)
    IS 'Queue an event that is not a row change (login, logout, widget cloned, ...); returns its id, or NULL when no webhook wants it';

-- ---------------------------------------------------------------------------
-- Delivery: one row per (event, webhook), written by the worker with the
-- outcome of its first attempt (until then, see inflight_first_attempts);
-- every attempt is kept in attempts.
--   pending    waiting for its next attempt (next_attempt_at); a retry the
--              worker is sending stays pending (and due) until its outcome
--              is recorded: if the worker dies, it is sent again
--   succeeded  a 2xx answer
--   failed     retries exhausted, or 410 Gone
--   cancelled  its webhook was disabled or deleted before it could be sent
-- ---------------------------------------------------------------------------
CREATE TABLE webhooks.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL,
    webhook_id      bigint NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    redelivery_of   bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
COMMENT ON TABLE webhooks.deliveries IS 'One delivery of an event to a webhook, with its state';
-- claiming: due deliveries in due order, without scanning the finished ones
-- (id makes every entry unique: a backlog made due at one instant would
-- otherwise be one long posting list, whose entries a scan cannot mark dead
-- one by one, so every claim would step over all the ones already sent)
CREATE INDEX deliveries_due_idx ON webhooks.deliveries (next_attempt_at, id)
    WHERE status = 'pending';
-- an event's deliveries (redeliver, pruning events nothing refers to)
CREATE INDEX deliveries_event_idx ON webhooks.deliveries (event_id);
-- Deliberately no more indexes: every delivery is inserted once and
-- updated at least once, each time through every index.  (Pruning after
-- webhooks.retention walks the primary key, as ids grow with time.)

-- First attempts in flight: the worker creates a delivery's row only with
-- the outcome of its first attempt (one write instead of an insert at
-- dispatch and an update after the attempt).  Until then the deliveries of
-- one dispatch are one row here: their ids (taken from the deliveries'
-- sequence at dispatch), events and webhooks.  The row goes when every
-- outcome is recorded; after a crash, or once leased_until has passed, the
-- deliveries still missing are created from it, pending, with an
-- "interrupted" attempt, and sent again.
CREATE TABLE webhooks.inflight_first_attempts (
    first_delivery bigint PRIMARY KEY,
    delivery_ids   bigint[] NOT NULL,
    event_ids      uuid[] NOT NULL,
    webhook_ids    bigint[] NOT NULL,
    leased_until   timestamptz NOT NULL
);
COMMENT ON TABLE webhooks.inflight_first_attempts IS
    'First attempts being sent, whose delivery rows are written with their outcome';

CREATE TABLE webhooks.attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   bigint NOT NULL,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   double precision,
    http_status   integer,
    error         text,
    response_body text
);
COMMENT ON TABLE webhooks.attempts IS 'Every HTTP attempt: when, how long, the status or the error, the first 4 KB of the response';
CREATE INDEX attempts_delivery_idx ON webhooks.attempts (delivery_id);

-- Per-webhook health, kept up to date by the worker (not in webhooks.webhooks,
-- whose every change makes all backends reload their capture cache).
CREATE TABLE webhooks.webhook_health (
    webhook_id           bigint PRIMARY KEY,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    failing_since        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_status          integer,
    last_error           text
);
COMMENT ON TABLE webhooks.webhook_health IS 'Last outcome of each webhook and how long it has been failing';

-- A version 7 UUID (time-ordered), as event ids are.
CREATE FUNCTION webhooks._new_event_id()
RETURNS uuid
AS 'MODULE_PATHNAME', 'webhooks_new_event_id_sql'
LANGUAGE C VOLATILE;

-- The payload envelope around JSON data, as the capture path writes it.
CREATE FUNCTION webhooks._build_payload(id uuid, type text, site_id bigint, space_id bigint,
                                        data text, test boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'webhooks_build_payload'
LANGUAGE C VOLATILE;

-- Realistic fake data for a test notification of a resource.
CREATE FUNCTION webhooks._sample_data(resource text, site_id bigint, space_id bigint)
RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE resource
        WHEN 'site' THEN json_build_object('id', coalesce(site_id, 1), 'name', 'Acme', 'host', 'acme.example',
                                           'enabled', true, 'visibility', 'visible')
        WHEN 'page' THEN json_build_object('id', 101, 'site_id', coalesce(site_id, 1), 'title', 'Summer sale',
                                           'slug', 'summer-sale', 'status', 'published')
        WHEN 'navigation' THEN json_build_object('id', 7, 'site_id', coalesce(site_id, 1), 'name', 'Main menu',
                                                 'items', json_build_array(json_build_object('label', 'Home', 'href', '/')))
        WHEN 'template' THEN json_build_object('id', 12, 'site_id', coalesce(site_id, 1), 'name', 'Article',
                                               'status', 'approved')
        WHEN 'theme' THEN json_build_object('id', 3, 'site_id', coalesce(site_id, 1), 'name', 'Dynamic',
                                            'status', 'installed')
        WHEN 'widget' THEN json_build_object('id', 55, 'site_id', coalesce(site_id, 1), 'name', 'Hero banner',
                                             'status', 'published')
        WHEN 'form_response' THEN json_build_object('id', 900, 'form_id', 4, 'site_id', coalesce(site_id, 1),
                                                    'answers', json_build_object('email', 'ana@example.com'))
        WHEN 'profile' THEN json_build_object('id', 31, 'site_id', coalesce(site_id, 1),
                                              'email', 'ana@example.com', 'display_name', 'Ana')
        WHEN 'session' THEN json_build_object('session_id', 77, 'profile_id', 31)
        WHEN 'space' THEN json_build_object('id', coalesce(space_id, 1), 'name', 'Blog', 'locale', 'en')
        WHEN 'type' THEN json_build_object('id', 2, 'space_id', coalesce(space_id, 1), 'name', 'Post')
        WHEN 'category' THEN json_build_object('id', 5, 'space_id', coalesce(space_id, 1), 'name', 'News')
        WHEN 'entry' THEN json_build_object('id', 1001, 'space_id', coalesce(space_id, 1), 'type_id', 2,
                                            'title', 'Hello world', 'status', 'published')
        ELSE json_build_object('id', 1)
    END
$$;

CREATE FUNCTION webhooks.send_test(webhook_id bigint)
RETURNS bigint
LANGUAGE plpgsql
-- runs as the extension owner: webhooks_admin may not write events itself
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w          webhooks.webhooks;
    ev_type    webhooks.event_types;
    ev_id      uuid := webhooks._new_event_id();
    ev_site    bigint;
    ev_space   bigint;
    body       text;
    delivery   bigint;
BEGIN
    SELECT * INTO w FROM webhooks.webhooks WHERE id = send_test.webhook_id;
    IF NOT FOUND THEN
        PERFORM webhooks._webhook_not_found(send_test.webhook_id);
    END IF;
    -- the first event type the webhook subscribes to, patterns resolved in catalog order
    SELECT t.* INTO ev_type
    FROM unnest(w.events) WITH ORDINALITY AS p(pattern, n)
    JOIN webhooks.event_types t
      ON p.pattern = '*' OR t.name = p.pattern OR (p.pattern LIKE '%.*' AND t.resource = left(p.pattern, -2))
    ORDER BY p.n, t.name
    LIMIT 1;
    IF ev_type.scope = 'site' THEN
        ev_site := coalesce(w.sites[1], 1);
    ELSE
        ev_space := coalesce(w.spaces[1], 1);
    END IF;
    body := webhooks._build_payload(ev_id, ev_type.name, ev_site, ev_space,
                                    webhooks._sample_data(ev_type.resource, ev_site, ev_space)::text, true);
    -- not in dispatch_queue: its one delivery is created right here
    INSERT INTO webhooks.event_store (id, type, site_id, space_id, webhook_ids, payload, test)
    VALUES (ev_id, ev_type.name, ev_site, ev_space, ARRAY[w.id], body::json, true);
    INSERT INTO webhooks.deliveries (event_id, webhook_id) VALUES (ev_id, w.id)
    RETURNING id INTO delivery;
    PERFORM webhooks._wake_worker();
    RETURN delivery;
END
$$;
COMMENT ON FUNCTION webhooks.send_test(bigint)
    IS 'Send a test notification with fake data to a webhook (even while webhooks are switched off); returns the delivery id';

CREATE FUNCTION webhooks.redeliver(delivery_id bigint)
RETURNS bigint
LANGUAGE plpgsql
-- runs as the extension owner: webhooks_admin may not write events itself
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d        webhooks.deliveries;
    new_id   bigint;
BEGIN
    SELECT * INTO d FROM webhooks.deliveries WHERE id = redeliver.delivery_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found',
            MESSAGE = format('delivery %s does not exist', redeliver.delivery_id),
            HINT = 'SELECT * FROM webhooks.delivery_log lists recent deliveries.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM webhooks.webhooks w WHERE w.id = d.webhook_id AND w.enabled) THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = format('webhook %s of delivery %s is disabled or deleted', d.webhook_id, d.id),
            HINT = 'Enable the webhook first: UPDATE webhooks.webhooks SET enabled = true WHERE id = ...';
    END IF;
    INSERT INTO webhooks.deliveries (event_id, webhook_id, redelivery_of)
    VALUES (d.event_id, d.webhook_id, d.id)
    RETURNING id INTO new_id;
    PERFORM webhooks._wake_worker();
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION webhooks.redeliver(bigint)
    IS 'Send a past delivery again, with the same webhook-id; returns the new delivery id';

-- ---------------------------------------------------------------------------
-- The worker
-- ---------------------------------------------------------------------------
CREATE FUNCTION webhooks._wake_worker()
RETURNS void
AS 'MODULE_PATHNAME', 'webhooks_wake_worker_sql'
LANGUAGE C VOLATILE;

CREATE FUNCTION webhooks.worker_status(OUT preloaded boolean, OUT worker_pid integer)
AS 'MODULE_PATHNAME', 'webhooks_worker_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION webhooks.worker_status()
    IS 'Whether the delivery worker can run (webhooks in shared_preload_libraries) and its pid in this database';

-- Tell the launcher that this database now has the extension.
SELECT webhooks._wake_worker();

-- ---------------------------------------------------------------------------
-- Views for psql
-- ---------------------------------------------------------------------------
CREATE VIEW webhooks.active AS
SELECT w.id, w.name, w.url, w.events, w.sites, w.spaces, w.created_at,
       CASE WHEN h.webhook_id IS NULL THEN 'no deliveries yet'
            WHEN h.failing_since IS NULL THEN 'ok'
            ELSE 'failing' END AS last_status,
       greatest(h.last_success_at, h.last_failure_at) AS last_delivery_at,
       h.last_status AS last_http_status,
       h.last_error
FROM webhooks.webhooks w
LEFT JOIN webhooks.webhook_health h ON h.webhook_id = w.id
WHERE w.enabled AND webhooks.is_enabled()
ORDER BY w.id;
COMMENT ON VIEW webhooks.active IS 'The webhooks that fire now (enabled, with the account switch on) and how their last delivery went';

CREATE VIEW webhooks.delivery_log AS
SELECT d.id, d.created_at, e.type AS event_type, d.event_id, d.webhook_id, w.name AS webhook,
       d.status, d.attempts, d.last_status AS http_status, d.last_error AS error,
       d.next_attempt_at, d.finished_at, e.test, d.redelivery_of,
       (SELECT json_agg(json_build_object('attempt', a.attempt, 'started_at', a.started_at,
                                          'duration_ms', round(a.duration_ms::numeric, 1),
                                          'http_status', a.http_status, 'error', a.error)
                        ORDER BY a.attempt, a.id)
        FROM webhooks.attempts a WHERE a.delivery_id = d.id) AS attempt_history
FROM webhooks.deliveries d
JOIN webhooks.event_store e ON e.id = d.event_id
LEFT JOIN webhooks.webhooks w ON w.id = d.webhook_id
ORDER BY d.id DESC;
COMMENT ON VIEW webhooks.delivery_log IS 'Deliveries, newest first, with every attempt';

CREATE VIEW webhooks.attempt_log AS
SELECT a.id, a.started_at, a.delivery_id, d.webhook_id, w.name AS webhook, e.type AS event_type,
       d.event_id, a.attempt, round(a.duration_ms::numeric, 1) AS duration_ms, a.http_status,
       a.error, a.response_body
FROM webhooks.attempts a
JOIN webhooks.deliveries d ON d.id = a.delivery_id
JOIN webhooks.event_store e ON e.id = d.event_id
LEFT JOIN webhooks.webhooks w ON w.id = d.webhook_id
ORDER BY a.id DESC;
COMMENT ON VIEW webhooks.attempt_log IS 'Every HTTP attempt, newest first, with the response excerpt';

CREATE VIEW webhooks.webhook_stats AS
SELECT w.id AS webhook_id, w.name, w.enabled,
       count(d.id) FILTER (WHERE d.status = 'succeeded') AS succeeded,
       count(d.id) FILTER (WHERE d.status = 'failed') AS failed,
       count(d.id) FILTER (WHERE d.status = 'pending') AS pending,
       count(d.id) FILTER (WHERE d.status = 'cancelled') AS cancelled,
       round(100.0 * count(d.id) FILTER (WHERE d.status = 'succeeded')
             / nullif(count(d.id) FILTER (WHERE d.status IN ('succeeded', 'failed')), 0), 1) AS success_rate,
       (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms)::numeric, 1)
        FROM webhooks.attempts a JOIN webhooks.deliveries d2 ON d2.id = a.delivery_id
        WHERE d2.webhook_id = w.id AND a.duration_ms IS NOT NULL) AS p50_ms,
       (SELECT round(percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms)::numeric, 1)
        FROM webhooks.attempts a JOIN webhooks.deliveries d2 ON d2.id = a.delivery_id
        WHERE d2.webhook_id = w.id AND a.duration_ms IS NOT NULL) AS p95_ms,
       h.last_success_at, h.last_failure_at, h.failing_since, h.consecutive_failures, h.last_error,
       w.disabled_reason
FROM webhooks.webhooks w
LEFT JOIN webhooks.deliveries d ON d.webhook_id = w.id
LEFT JOIN webhooks.webhook_health h ON h.webhook_id = w.id
GROUP BY w.id, h.webhook_id
ORDER BY w.id;
COMMENT ON VIEW webhooks.webhook_stats IS 'Per webhook: deliveries by status, success rate, latency percentiles, last error';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; webhooks_admin manages webhooks.
-- The capture trigger enqueues with the extension owner's rights, so CMS
-- roles need no rights here at all.
-- ---------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA webhooks FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;

GRANT USAGE ON SCHEMA webhooks TO webhooks_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA webhooks TO webhooks_admin;
GRANT INSERT, UPDATE, DELETE ON webhooks.webhooks, webhooks.tracked_tables TO webhooks_admin;
GRANT INSERT, UPDATE ON webhooks.settings TO webhooks_admin;
GRANT USAGE ON SEQUENCE webhooks.webhooks_id_seq TO webhooks_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks TO webhooks_admin;
-- the one exception to "nothing for PUBLIC": see its definition
GRANT EXECUTE ON FUNCTION webhooks._capture_wanted(regclass) TO PUBLIC;
