#!/bin/sh
# ECG Lens container entrypoint: one image, three roles.
#
#   api      the API server (`ecglens serve`) on API_HOST:API_PORT (default 0.0.0.0:8000); after `migrate` its own
#            start-up check finds the schema at head and the first key made
#   worker   one Celery worker (`celery -A ecglens.service.worker worker`). WORKER_CONCURRENCY=1 (default, and always
#            for a GPU worker): the solo pool, jobs run in the worker process itself, which loads each classifier
#            once and keeps it on its device (CUDA is never initialised before a fork). Above 1: a prefork pool
#            of that many CPU processes.
#   migrate  one-shot start-up step: `ecglens db upgrade`, then the first admin key, printed once
#   *        anything else is run as given (e.g. `ecglens create-key --role clinician`)
#
# docker-compose.yml runs `migrate` once before `api` and `worker` start; natively the same script runs them
# (tests/integration/test_deploy.py does exactly that).
set -eu

role="${1:-api}"
[ "$#" -gt 0 ] && shift

case "$role" in
  api)
    exec ecglens serve --host "${API_HOST:-0.0.0.0}" --port "${API_PORT:-8000}" "$@"
    ;;
  worker)
    concurrency="${WORKER_CONCURRENCY:-1}"
    pool=prefork
    [ "$concurrency" = "1" ] && pool=solo
    # -n: a unique node name per container/process (the host name is the container id under compose).
    exec celery -A ecglens.service.worker worker \
      --loglevel "${WORKER_LOGLEVEL:-INFO}" \
      --pool "$pool" --concurrency "$concurrency" \
      -n "${WORKER_NAME:-worker}@%h" "$@"
    ;;
  migrate)
    ecglens db upgrade
    exec python "$(dirname "$0")/first_admin_key.py"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
