#!/bin/sh
# minio-init (one shot, idempotent): the lake bucket, and two MinIO users limited to it. The root
# credentials stay in this container and in minio; the platform never sees them.
#   LAKE_WRITER_USER: get, put, delete, list in the bucket (the code server's runs)
#   LAKE_READER_USER: get and list only (the dashboard)
# Re-running it with a new LAKE_*_PASSWORD rotates that user's secret (`mc admin user add` updates it).
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${LAKE_BUCKET:?}"
: "${LAKE_WRITER_USER:?}" "${LAKE_WRITER_PASSWORD:?}" "${LAKE_READER_USER:?}" "${LAKE_READER_PASSWORD:?}"

mc alias set lake http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "lake/$LAKE_BUCKET"

policy() {  # name, object actions (JSON list items)
  cat > "/tmp/$1.json" <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::$LAKE_BUCKET"]},
  {"Effect": "Allow", "Action": [$2], "Resource": ["arn:aws:s3:::$LAKE_BUCKET/*"]}
]}
JSON
  mc admin policy create lake "$1" "/tmp/$1.json"
}
policy usdcop-lake-writer '"s3:GetObject", "s3:PutObject", "s3:DeleteObject"'
policy usdcop-lake-reader '"s3:GetObject"'

user() {  # access key, secret key, policy
  mc admin user add lake "$1" "$2"
  mc admin policy attach lake "$3" --user "$1" || mc admin user info lake "$1" | grep -q "$3"
}
user "$LAKE_WRITER_USER" "$LAKE_WRITER_PASSWORD" usdcop-lake-writer
user "$LAKE_READER_USER" "$LAKE_READER_PASSWORD" usdcop-lake-reader
