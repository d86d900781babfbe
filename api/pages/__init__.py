"""Server-rendered HTML: the public status page, one public page per incident, and the
operators' dashboard, rendered from Jinja2 templates (api/templates) with autoescaping, so
every value that came from a user is escaped by the template engine. Routes are in
api/routes/pages.py."""
