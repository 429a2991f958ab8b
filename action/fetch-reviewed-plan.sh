#!/usr/bin/env bash
# Finds the pull request that was merged as $GITHUB_SHA and downloads the plan that its last
# successful plan run saved (the $RECONCILER_ARTIFACT artifact) into $RECONCILER_OUT, for apply.sh.
# A push without a pull request, a pull request without such a run, or an expired artifact leaves
# nothing there, and apply.sh plans afresh and says why. Step outputs: pr, run, note.
# Needs GH_TOKEN, GITHUB_REPOSITORY, GITHUB_SHA; RECONCILER_PR_WORKFLOW names the plan workflow's file.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${GITHUB_REPOSITORY:?}" "${GITHUB_SHA:?}"
repo="repos/$GITHUB_REPOSITORY"
workflow=${RECONCILER_PR_WORKFLOW:-reconciler-pr.yml}
rm -rf "$out"

nothing() {
  set_output note "$1"
  echo "No reviewed plan: $1."
  exit 0
}

pulls=$(gh api "$repo/commits/$GITHUB_SHA/pulls") ||
  nothing "GitHub did not say which pull request commit ${GITHUB_SHA:0:7} came from (permissions: pull-requests: read?)"
read -r pr head < <(jq -r '[.[] | select(.merged_at != null)][0] // empty | "\(.number) \(.head.sha)"' <<<"$pulls") || true
[ -n "${pr:-}" ] || nothing "no merged pull request for commit ${GITHUB_SHA:0:7}"

runs=$(gh api "$repo/actions/workflows/$workflow/runs?head_sha=$head&status=success&per_page=1") ||
  nothing "GitHub did not list the $workflow runs of #$pr (permissions: actions: read?)"
run=$(jq -r '.workflow_runs[0].id // empty' <<<"$runs")
[ -n "$run" ] || nothing "no successful $workflow run for #$pr at ${head:0:7}"

if ! gh run download "$run" --repo "$GITHUB_REPOSITORY" --name "${RECONCILER_ARTIFACT:-reconciler-plan}" --dir "$out"; then
  rm -rf "$out"
  nothing "the plan artifact of run $run (#$pr) could not be downloaded (expired?)"
fi
set_output pr "$pr"
set_output run "$run"
echo "Reviewed plan of #$pr (run $run): $(plan_counts "$out/plan.json")."
