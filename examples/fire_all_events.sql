-- examples/fire_all_events.sql: one CMS change for each of the 50 event
-- types, on the schema of examples/cms.sql.  The README's event table
-- quotes these statements; the pg_regress test "cms" runs this file and
-- checks that every event type was queued.

-- site events
INSERT INTO cms.sites (id, name, host) VALUES (1, 'Acme', 'acme.example');             -- site.created
UPDATE cms.sites SET name = 'Acme Inc.' WHERE id = 1;                                     -- site.updated
UPDATE cms.sites SET enabled = false WHERE id = 1;                                        -- site.disabled
UPDATE cms.sites SET enabled = true WHERE id = 1;                                         -- site.enabled
UPDATE cms.sites SET visibility = 'hidden' WHERE id = 1;                                  -- site.hidden
UPDATE cms.sites SET visibility = 'staged' WHERE id = 1;                                  -- site.staged
UPDATE cms.sites SET visibility = 'visible' WHERE id = 1;                                 -- site.visible

INSERT INTO cms.pages (id, site_id, title, slug) VALUES (1, 1, 'Home', 'home');           -- page.created
UPDATE cms.pages SET body = 'Welcome' WHERE id = 1;                                       -- page.updated
UPDATE cms.pages SET status = 'published' WHERE id = 1;                                   -- page.published
UPDATE cms.pages SET status = 'unpublished' WHERE id = 1;                                 -- page.unpublished
DELETE FROM cms.pages WHERE id = 1;                                                       -- page.deleted

INSERT INTO cms.navigations (id, site_id, name) VALUES (1, 1, 'Main menu');               -- (no event: navigation.created is not one)
UPDATE cms.navigations SET items = '[{"label": "Home", "href": "/"}]' WHERE id = 1;       -- navigation.updated
UPDATE cms.navigations SET status = 'in_review' WHERE id = 1;                             -- navigation.review_requested
UPDATE cms.navigations SET status = 'approved' WHERE id = 1;                              -- navigation.approved
UPDATE cms.navigations SET status = 'published' WHERE id = 1;                             -- navigation.published

INSERT INTO cms.templates (id, site_id, name) VALUES (1, 1, 'Article');                   -- (no event)
UPDATE cms.templates SET markup = '<article>{{ body }}</article>' WHERE id = 1;           -- template.updated
UPDATE cms.templates SET status = 'in_review' WHERE id = 1;                               -- template.review_requested
UPDATE cms.templates SET status = 'approved' WHERE id = 1;                                -- template.approved

INSERT INTO cms.themes (id, site_id, name) VALUES (1, 1, 'Dynamic');                      -- (no event)
UPDATE cms.themes SET status = 'installed' WHERE id = 1;                                  -- theme.installed
UPDATE cms.themes SET settings = '{"primary": "#0055ff"}' WHERE id = 1;                  -- theme.updated
SELECT cms.reset_theme(1);                                                                -- theme.reset (+ theme.updated)

INSERT INTO cms.widgets (site_id, name) VALUES (1, 'Hero banner');                           -- widget.created
UPDATE cms.widgets SET config = '{"image": "hero.png"}' WHERE id = 1;                     -- widget.updated
UPDATE cms.widgets SET status = 'in_review' WHERE id = 1;                                 -- widget.review_requested
UPDATE cms.widgets SET status = 'approved' WHERE id = 1;                                  -- widget.approved
UPDATE cms.widgets SET status = 'published' WHERE id = 1;                                 -- widget.published
UPDATE cms.widgets SET status = 'unpublished' WHERE id = 1;                               -- widget.unpublished
SELECT cms.clone_widget(1) > 0 AS cloned;                                                 -- widget.cloned (+ widget.created)
UPDATE cms.widgets SET status = 'archived' WHERE id = 1;                                  -- widget.updated
SELECT cms.restore_widget(1);                                                             -- widget.restored (+ widget.updated)

INSERT INTO cms.forms (id, site_id, name) VALUES (1, 1, 'Contact');                       -- (forms are not tracked)
INSERT INTO cms.form_responses (id, form_id, site_id, answers)
    VALUES (1, 1, 1, '{"email": "ana@example.com"}');                                     -- form_response.created
UPDATE cms.form_responses SET answers = '{"email": "ana@example.org"}' WHERE id = 1;     -- form_response.updated

INSERT INTO cms.user_profiles (id, site_id, email, password_hash)
    VALUES (1, 1, 'ana@example.com', 'scrypt$not-in-payloads');                           -- (no event: profile.created is not one)
UPDATE cms.user_profiles SET display_name = 'Ana' WHERE id = 1;                           -- profile.updated
SELECT cms.login(1) AS session_id;                                                        -- session.login
SELECT cms.logout(1);                                                                     -- session.logout

-- space events
INSERT INTO cms.spaces (id, name) VALUES (1, 'Blog');                                     -- space.created
UPDATE cms.spaces SET locale = 'es' WHERE id = 1;                                         -- space.updated

INSERT INTO cms.content_types (id, space_id, name) VALUES (1, 1, 'Post');                 -- type.created
UPDATE cms.content_types SET fields = '[{"name": "title", "type": "text"}]' WHERE id = 1; -- type.updated
INSERT INTO cms.content_types (id, space_id, name) VALUES (2, 1, 'Draft type');           -- type.created
DELETE FROM cms.content_types WHERE id = 2;                                               -- type.deleted

INSERT INTO cms.categories (id, space_id, name) VALUES (1, 1, 'News');                    -- category.created
UPDATE cms.categories SET name = 'Latest news' WHERE id = 1;                              -- category.updated
INSERT INTO cms.categories (id, space_id, name) VALUES (2, 1, 'Old');                     -- category.created
DELETE FROM cms.categories WHERE id = 2;                                                  -- category.deleted

INSERT INTO cms.entries (id, space_id, type_id, category_id, title)
    VALUES (1, 1, 1, 1, 'Hello world');                                                   -- entry.created
UPDATE cms.entries SET fields = '{"body": "First post"}' WHERE id = 1;                    -- entry.updated
UPDATE cms.entries SET status = 'in_review' WHERE id = 1;                                 -- entry.review_requested
UPDATE cms.entries SET status = 'approved' WHERE id = 1;                                  -- entry.approved
UPDATE cms.entries SET status = 'published' WHERE id = 1;                                 -- entry.published
UPDATE cms.entries SET status = 'unpublished' WHERE id = 1;                               -- entry.unpublished

-- last, so that nothing above cascades away
INSERT INTO cms.sites (id, name, host) VALUES (2, 'Old site', 'old.example');             -- site.created
DELETE FROM cms.sites WHERE id = 2;                                                       -- site.deleted
