-- The application roles of one database (docker/initdb/10-roles.sh runs it as the database's admin, the
-- image's POSTGRES_USER; re-running it is how passwords are rotated: docs/deployment.md).
--   writer_user: creates and owns the tables it writes (the warehouse's code server, the Dagster
--                processes); no superuser, no CREATEDB/CREATEROLE.
--   reader_user: SELECT on every table of schema public, present and future (the dashboard, the
--                read-only Dagster webserver); cannot write, create or alter anything.
-- psql variables: writer_user, writer_password, reader_user, reader_password.
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN', :'writer_user') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'writer_user') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'reader_user') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'writer_user', :'writer_password') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
              :'reader_user', :'reader_password') \gexec

-- Only these roles (and the admin) may connect; only the writer may create temporary tables (COPY staging).
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), :'writer_user') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reader_user') \gexec

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('GRANT USAGE, CREATE ON SCHEMA public TO %I', :'writer_user') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'reader_user') \gexec

-- Tables the writer creates from now on are readable by the reader; those already there too.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'writer_user', :'reader_user') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'reader_user') \gexec
