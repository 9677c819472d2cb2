#!/bin/sh
# Point this checkout's DVC remote at the team stack's object store (run from the repository root).
#
#   set -a; . infra/env/client.env; set +a # S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#   sh infra/dvc-remote.sh
#   dvc push                               # prompts (data/prepared) and checkpoints (models/)
#   dvc pull                               # on another machine, after the same two lines
#
# The remote, its address and its URL go to .dvc/config.local (git-ignored by DVC), never to the
# committed .dvc/config: every address and credential stays in the environment files. Credentials
# are not written anywhere: DVC's S3 client reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from
# the environment of each `dvc push` / `dvc pull`.
#
#   S3_ENDPOINT_URL    the object store, e.g. http://localhost:9000 (MinIO of infra/compose.yaml)
#   DVC_REMOTE_URL     default s3://powerflow/dvc (the bucket the stack creates, prefix dvc/)
#   DVC_REMOTE_NAME    default team
set -eu

: "${S3_ENDPOINT_URL:?set S3_ENDPOINT_URL to the object store (see infra/env/client.env.example)}"
name=${DVC_REMOTE_NAME:-team}
url=${DVC_REMOTE_URL:-s3://powerflow/dvc}

dvc remote add --local --default --force "$name" "$url"
dvc remote modify --local "$name" endpointurl "$S3_ENDPOINT_URL"
echo "DVC remote '$name' -> $url at $S3_ENDPOINT_URL (in .dvc/config.local; credentials from the environment)"
