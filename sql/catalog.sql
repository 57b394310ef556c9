-- The event catalog: exactly the 50 event types of the product page.
SELECT count(*) AS total,
       count(*) FILTER (WHERE scope = 'site') AS site,
       count(*) FILTER (WHERE scope = 'space') AS space
FROM webhooks.event_types;

SELECT scope, name, label_en, label_es FROM webhooks.event_types ORDER BY scope, name;

-- resource and action are derived from the name
SELECT resource, array_agg(action ORDER BY action) AS actions
FROM webhooks.event_types GROUP BY resource ORDER BY resource;

-- the switch is off after CREATE EXTENSION, and can be flipped
SELECT webhooks.is_enabled();
SELECT webhooks.enable();
SELECT webhooks.is_enabled();
SELECT webhooks.disable();
SELECT webhooks.is_enabled();
