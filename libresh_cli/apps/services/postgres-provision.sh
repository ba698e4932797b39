#!/bin/sh
# Creates, or brings up to date, one instance's role and database on an external PostgreSQL
# server. Run by the `postgres-provision` Job of instances using the `external` provider, and
# by the tests against a real server. Safe to run again: every statement checks first.
#
# Admin connection: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE (libpq's own variables).
# The instance: APP_DATABASE, APP_USER, APP_PASSWORD.
set -eu
: "${APP_DATABASE:?}" "${APP_USER:?}" "${APP_PASSWORD:?}"
psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --dbname=postgres \
    -v app_database="$APP_DATABASE" -v app_user="$APP_USER" -v app_password="$APP_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'app_user', :'app_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_database', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_database') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_database', :'app_user') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app_database') \gexec
SQL
echo "role and database $APP_DATABASE are ready"
