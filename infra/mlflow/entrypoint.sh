#!/bin/sh
# MLflow tracking server with MLflow's basic-auth app, configured from the environment:
#
#   MLFLOW_BACKEND_STORE_URI       postgresql://USER:PASSWORD@HOST:5432/mlflow   (runs, metrics, registry)
#   MLFLOW_ARTIFACTS_DESTINATION   s3://BUCKET/PREFIX (artifacts, proxied: clients need no bucket credentials)
#   MLFLOW_AUTH_DATABASE_URI       postgresql://USER:PASSWORD@HOST:5432/mlflow_auth   (users, permissions)
#   MLFLOW_AUTH_ADMIN_USERNAME     admin user created on first start (default: admin)
#   MLFLOW_AUTH_ADMIN_PASSWORD     its password (required; ignored once the user exists)
#   MLFLOW_AUTH_DEFAULT_PERMISSION what a signed-in user may do with others' experiments/models (default: READ)
#   MLFLOW_AUTH_CACHE_TTL_SECONDS  seconds a verified password stays cached per server worker (default: 0, off).
#                                  Every API call otherwise pays a PBKDF2 check; password changes and deletions
#                                  reach other workers/replicas only after this many seconds.
#   MLFLOW_FLASK_SERVER_SECRET_KEY static secret for CSRF tokens, the same on every replica (required)
#   MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the artifact store (MinIO or S3)
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION   MLflow's background job runner (GenAI evaluation and trace jobs,
#                                  eight extra processes); gene-ae uses none of it (default here: false)
#
# Arguments are passed to `mlflow server` (e.g. --host 0.0.0.0 --port 5000 --workers 2 --allowed-hosts ...).
# MLflow reads the auth database location only from an ini file, so this script writes one (mode 600).
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql://...)}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (postgresql://...)}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY}"
export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

conf_dir="${MLFLOW_AUTH_CONFIG_DIR:-${TMPDIR:-/tmp}/mlflow-auth-$$}"
mkdir -p "$conf_dir"
chmod 700 "$conf_dir"
export MLFLOW_AUTH_CONFIG_PATH="$conf_dir/basic_auth.ini"
umask 077
# configparser treats % as interpolation: URL-encoded passwords (%40 ...) must be written as %%.
auth_db=$(printf '%s' "$MLFLOW_AUTH_DATABASE_URI" | sed 's/%/%%/g')
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${auth_db}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-0}
INI

exec mlflow server --app-name basic-auth --serve-artifacts "$@"
