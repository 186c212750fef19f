#!/usr/bin/env bash
# The published tutorial "Publish your first image" (spec/api.md §5, "Tutorial flow
# checklist"), step by step with the same requests and the same shell idioms a reader
# copies from it: values read with `jq -r`, then spliced into JSON bodies with
# '"$VAR"' quoting (step 4's `"etag": "'"$PART_ETAG"'"` is what broke when part ETags
# carried S3's double quotes). Request bodies go with `-d`, as the tutorial sends them,
# without a JSON content type.
#
# Unlike the tutorial it stops at the first thing that goes wrong: `set -euo pipefail`,
# every curl with --fail-with-body (an error status fails the step and shows the
# problem+json body), and polls that are bounded and give up on a `failed` state.
#
# Input: $API (imgsrv's base URL) and, in the working directory, imgsrv.out (the server's
# stdout with the bootstrap banner). Run by test/docs/tutorial.test.ts.
set -euo pipefail

: "${API:?set API to the imgsrv base URL}"
CURL=(curl --silent --show-error --fail-with-body)

step() { printf '== %s\n' "$*"; }

# poll_state URL WANT: GET URL until its .state is WANT; fails at once on failed/aborted
# (printing the resource) and after 60 s of anything else.
poll_state() {
  local url=$1 want=$2 state="" body
  for _ in $(seq 1 120); do
    body=$("${CURL[@]}" -H "Authorization: Bearer $TOKEN" "$url")
    state=$(echo "$body" | jq -r .state)
    case $state in
      "$want") return 0 ;;
      failed | aborted)
        echo "$url is $state: $body" >&2
        return 1
        ;;
    esac
    sleep 0.5
  done
  echo "$url is still $state after 60 s (wanted $want)" >&2
  return 1
}

# upload FILE: the tutorial's upload of one file in a single part; sets DIGEST and SIZE.
upload() {
  local file=$1
  DIGEST=sha256:$(sha256sum "$file" | cut -d' ' -f1)
  SIZE=$(stat -c %s "$file")
  UPLOAD_ID=$("${CURL[@]}" -X POST "$API/v1/uploads" -H "Authorization: Bearer $TOKEN" \
    -d '{"expected_digest": "'"$DIGEST"'", "expected_size_bytes": '"$SIZE"'}' | jq -r .id)
  PART_RESPONSE=$("${CURL[@]}" -X PUT "$API/v1/uploads/$UPLOAD_ID/parts/1" -H "Authorization: Bearer $TOKEN" \
    --data-binary @"$file")
  PART_ETAG=$(echo "$PART_RESPONSE" | jq -r .etag)
  PART_SIZE=$(echo "$PART_RESPONSE" | jq -r .size_bytes)
  "${CURL[@]}" -X POST "$API/v1/uploads/$UPLOAD_ID/complete" -H "Authorization: Bearer $TOKEN" \
    -d '{"parts": [{"number": 1, "etag": "'"$PART_ETAG"'", "size_bytes": '"$PART_SIZE"'}]}' >/dev/null
  poll_state "$API/v1/uploads/$UPLOAD_ID" ready
}

step "1. the server is up"
HEALTH=$(curl --silent --show-error -o /dev/null -w '%{http_code}' "$API/healthz")
[ "$HEALTH" = 204 ] || { echo "/healthz answered $HEALTH" >&2; exit 1; }
ADMIN_TOKEN=$(grep -o 'imgsrv_at_[A-Za-z0-9_-]*' imgsrv.out | head -n 1)

step "2. a publisher principal with the content-writer role, and its token"
PRINCIPAL_ID=$("${CURL[@]}" -X POST "$API/v1/auth/principals" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -d '{"kind": "service", "display_name": "tutorial publisher"}' | jq -r .id)
ROLE_ID=$("${CURL[@]}" "$API/v1/auth/roles" -H "Authorization: Bearer $ADMIN_TOKEN" |
  jq -r '.roles[] | select(.name == "content-writer") | .id')
"${CURL[@]}" -X PUT "$API/v1/auth/principals/$PRINCIPAL_ID/roles/$ROLE_ID" -H "Authorization: Bearer $ADMIN_TOKEN"
TOKEN=$("${CURL[@]}" -X POST "$API/v1/auth/principals/$PRINCIPAL_ID/api-tokens" \
  -H "Authorization: Bearer $ADMIN_TOKEN" \
  -d '{"name": "tutorial", "expires_at": "2099-01-01T00:00:00Z"}' | jq -r .plaintext)

step "3. a disk image and its Incus metadata"
head -c 10485760 /dev/urandom >disk.qcow2
printf 'architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: tutorial\n' >metadata.yaml
tar -cJf incus.tar.xz metadata.yaml

step "4. upload both (begin, one part, complete with the part's ETag, wait until ready)"
upload disk.qcow2
DISK_DIGEST=$DIGEST DISK_SIZE=$SIZE
upload incus.tar.xz
META_DIGEST=$DIGEST META_SIZE=$SIZE

step "5. image, draft version, artifact, metadata attachment"
"${CURL[@]}" -X POST "$API/v1/images" -H "Authorization: Bearer $TOKEN" \
  -d '{"name": "tutorial", "display_name": "Tutorial"}' >/dev/null
"${CURL[@]}" -X POST "$API/v1/images/tutorial/versions" -H "Authorization: Bearer $TOKEN" \
  -d '{"version": "0.1.0"}' >/dev/null
ARTIFACT_ID=$("${CURL[@]}" -X POST "$API/v1/images/tutorial/versions/0.1.0/artifacts" \
  -H "Authorization: Bearer $TOKEN" \
  -d '{"operating_system": "linux", "architecture": "amd64", "format": "qcow2",
       "primary_blob_digest": "'"$DISK_DIGEST"'", "primary_blob_size_bytes": '"$DISK_SIZE"',
       "primary_media_type": "application/x-qemu-disk"}' | jq -r .id)
"${CURL[@]}" -X POST "$API/v1/images/tutorial/versions/0.1.0/artifacts/$ARTIFACT_ID/attachments" \
  -H "Authorization: Bearer $TOKEN" \
  -d '{"name": "incus.tar.xz", "media_type": "application/x-incus-metadata",
       "blob_digest": "'"$META_DIGEST"'", "blob_size_bytes": '"$META_SIZE"'}' >/dev/null

step "6. publish and wait for the job"
JOB_ID=$("${CURL[@]}" -X POST "$API/v1/images/tutorial/versions/0.1.0/publish" -H "Authorization: Bearer $TOKEN" |
  jq -r .job_id)
poll_state "$API/v1/publish-jobs/$JOB_ID" succeeded

step "7. the alias latest, read anonymously"
"${CURL[@]}" -X PUT "$API/v1/images/tutorial/aliases/latest" -H "Authorization: Bearer $TOKEN" \
  -d '{"version": "0.1.0"}' >/dev/null
ALIASED=$("${CURL[@]}" "$API/v1/images/tutorial/aliases/latest" | jq -r .version)
[ "$ALIASED" = 0.1.0 ] || { echo "latest points at $ALIASED" >&2; exit 1; }

step "8. anonymous download, byte for byte"
"${CURL[@]}" -o downloaded.qcow2 "$API/v1/images/tutorial/versions/0.1.0/artifacts/$ARTIFACT_ID/download"
cmp disk.qcow2 downloaded.qcow2

echo "published tutorial 0.1.0: artifact $ARTIFACT_ID, disk $DISK_DIGEST"
