# Sourced by every reconciler CI script: strict mode, the settings, and small GitHub helpers.
#
# Settings (environment variables that action.yml sets from its inputs):
#   RECONCILER_PATHS       manifest files or directories, space-separated (default: manifests)
#   RECONCILER_VAR_FILE    a --var-file for validate and plan (optional; RECONCILER_VAR_<name> work too)
#   RECONCILER_PRUNE       "true": plan (and so apply) deletes managed endpoints gone from the manifests
#   RECONCILER_STACK       read by reconciler itself; also names the comment, the check and the issue
#   RECONCILER_DEPLOYER    read by reconciler itself: the identity that applies (plans are made for it)
#   RECONCILER_OUT         where plan files go, and the artifact's content (default: reconciler-plan)
# Workspace auth is the Databricks SDK's own (DATABRICKS_HOST + DATABRICKS_CLIENT_ID/SECRET in CI):
# no script reads, prints or passes a credential.

set -euo pipefail

read -r -a paths <<<"${RECONCILER_PATHS:-manifests}"
out=${RECONCILER_OUT:-reconciler-plan}
stack=${RECONCILER_STACK:-}
marker="<!-- reconciler-plan:${stack:-default} -->"

validate_flags=()
[ -z "${RECONCILER_VAR_FILE:-}" ] || validate_flags+=(--var-file "$RECONCILER_VAR_FILE")
plan_flags=("${validate_flags[@]}")
[ "${RECONCILER_PRUNE:-false}" != true ] || plan_flags+=(--prune)

# Everything that decides a plan's desired side, hashed: equal digests mean the plan was made from
# the same manifests, variables and flags. Values go into the hash only, never to the log.
manifests_digest() {
  {
    printf 'paths: %s\nprune: %s\nstack: %s\ndeployer: %s\n' "${paths[*]}" "${RECONCILER_PRUNE:-false}" "$stack" \
      "${RECONCILER_DEPLOYER:-}"
    env | grep '^RECONCILER_VAR_' | LC_ALL=C sort || true
    find "${paths[@]}" ${RECONCILER_VAR_FILE:+"$RECONCILER_VAR_FILE"} -type f \
      \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
  } | sha256sum | cut -d' ' -f1
}

# A step output (`steps.<id>.outputs.<name>` in the workflow).
set_output() {
  printf '%s=%s\n' "$1" "$2" >>"${GITHUB_OUTPUT:-/dev/null}"
}

# Appends stdin to the job summary shown on the run's page.
to_summary() {
  cat >>"${GITHUB_STEP_SUMMARY:-/dev/null}"
}

# A workflow command (::error / ::warning / ::notice) with its message escaped as GitHub requires.
annotate() {
  local level=$1 properties=$2 message=$3
  message=${message//'%'/'%25'}
  message=${message//$'\r'/'%0D'}
  message=${message//$'\n'/'%0A'}
  printf '::%s %s::%s\n' "$level" "$properties" "$message"
}

run_url() {
  printf '%s/%s/actions/runs/%s' "${GITHUB_SERVER_URL:-https://github.com}" "${GITHUB_REPOSITORY:-}" \
    "${GITHUB_RUN_ID:-}"
}

# "2 to update, 1 to create" from a saved plan's summary (the JSON plan is versioned; the text is not).
plan_counts() {
  jq -r '[.summary | to_entries[] | select(.key != "no-op" and .value > 0) | "\(.value) to \(.key)"]
         | if length == 0 then "no changes" else join(", ") end' "$1"
}
