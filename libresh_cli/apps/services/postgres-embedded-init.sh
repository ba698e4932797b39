# shellcheck shell=sh
# Run once, when the embedded PostgreSQL initialises its data directory: the postgres image
# runs (or sources) the *.sh files of /docker-entrypoint-initdb.d with its temporary server up,
# after creating POSTGRES_DB owned by POSTGRES_USER, the superuser (docker-library/postgres
# docker-entrypoint.sh: docker_setup_db, docker_process_init_files).
#
# The app gets a role of its own that owns its database but is not a superuser and may not
# create roles: Nextcloud's installer, given a user with CREATEROLE, makes an `oc_admin` role
# of its own that then owns every table (nextcloud/server lib/private/Setup/PostgreSQL.php),
# which a restore made as another role cannot give back. Owning the database also makes it
# owner of the `public` schema on PostgreSQL 15+ (pg_database_owner). Written so it can run
# again (each statement checks first).
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_user="$APP_USER" -v app_password="$APP_PASSWORD" -v app_database="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD %L',
              :'app_user', :'app_password') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_database', :'app_user') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'app_database') \gexec
SQL
