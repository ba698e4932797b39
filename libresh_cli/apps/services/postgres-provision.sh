#!/bin/sh
# Creates, or brings up to date, one instance's role and database on an external PostgreSQL
# server. Run by the `postgres-provision` Job of instances using the `external` provider, and
# by the tests against a real server. Safe to run again: every statement checks first.
#
# Admin connection: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE (libpq's own variables).
# The instance: APP_DATABASE, APP_USER, APP_PASSWORD; APP_LOCALE (optional, e.g. C): a new
# database gets that collation and ctype, with encoding UTF8, copied from template0 (the only
# template whose locale may differ from its copy's: PostgreSQL docs, CREATE DATABASE and
# "Template Databases"). An existing database keeps its own.
#
# The admin needs CREATEROLE and CREATEDB, not SUPERUSER (managed servers give none), on
# PostgreSQL 13 to 18:
# - `CREATE DATABASE ... OWNER app`: "To create a database owned by another role, you must be
#   able to SET ROLE to that role" (PostgreSQL 16+ docs, CREATE DATABASE); up to 15: "be a
#   direct or indirect member of that role". A CREATEROLE admin is neither by itself: since
#   PostgreSQL 16 the role it creates is granted back to it "WITH ADMIN TRUE, SET FALSE,
#   INHERIT FALSE" (docs, CREATE ROLE), so it may grant the role, also to itself. Hence the
#   GRANT below: SET only (16+), so the admin does not inherit the app's privileges.
# - The database's privileges are the owner's to change: the REVOKE runs as the app's role.
# - The app's role gets LOGIN only: no CREATEDB, no CREATEROLE; it owns its database, and so
#   (PostgreSQL 15+) the `public` schema, which belongs to pg_database_owner.
#
# No password on a command line (argv is readable by every user of the node, in
# /proc/PID/cmdline and ps): the admin's comes in PGPASSWORD, the app's in APP_PASSWORD, both
# in the environment, which only the owner and root may read; psql takes the inputs from there
# with \getenv (psql 15 and later: the Job's postgres:16.6-alpine has psql 16).
set -eu
: "${APP_DATABASE:?}" "${APP_USER:?}" "${APP_PASSWORD:?}"
APP_LOCALE="${APP_LOCALE:-}"
export APP_DATABASE APP_USER APP_PASSWORD APP_LOCALE
psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --dbname=postgres <<'SQL'
\getenv app_database APP_DATABASE
\getenv app_user APP_USER
\getenv app_password APP_PASSWORD
\getenv app_locale APP_LOCALE
SELECT current_setting('server_version_num')::int >= 160000 AS pg16 \gset
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'app_user', :'app_password') \gexec
-- A superuser passes pg_has_role already; so does an admin that ran this before.
SELECT CASE WHEN :'pg16'::boolean THEN format('GRANT %I TO CURRENT_USER WITH INHERIT FALSE, SET TRUE', :'app_user')
            ELSE format('GRANT %I TO CURRENT_USER', :'app_user') END
 WHERE NOT pg_has_role(current_user, :'app_user', CASE WHEN :'pg16'::boolean THEN 'SET' ELSE 'MEMBER' END) \gexec
SELECT CASE WHEN :'app_locale' = '' THEN format('CREATE DATABASE %I OWNER %I', :'app_database', :'app_user')
            ELSE format('CREATE DATABASE %I OWNER %I TEMPLATE template0 ENCODING %L LC_COLLATE %L LC_CTYPE %L',
                        :'app_database', :'app_user', 'UTF8', :'app_locale', :'app_locale') END
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_database') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_database', :'app_user')
  FROM pg_database WHERE datname = :'app_database' AND pg_get_userbyid(datdba) <> :'app_user' \gexec
SELECT format('SET ROLE %I', :'app_user') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app_database') \gexec
RESET ROLE;
SQL
echo "role and database $APP_DATABASE are ready"
