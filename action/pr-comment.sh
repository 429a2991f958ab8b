#!/usr/bin/env bash
# Publishes a pull request's plan: the pull request's one reconciler comment (found again by its
# hidden marker and edited in place, so a push updates it instead of adding another), and a
# "reconciler plan" check run: success for no changes, neutral for changes (a required check
# that still lets the pull request merge), failure for an error.
# Needs GH_TOKEN, PR_NUMBER, HEAD_SHA and PLAN_EXITCODE (empty when the plan step did not run,
# e.g. because validation failed: then the comment shows the validation errors instead).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${PR_NUMBER:?}" "${HEAD_SHA:?}" "${GITHUB_REPOSITORY:?}"
repo="repos/$GITHUB_REPOSITORY"
code=${PLAN_EXITCODE:-1}
author=${RECONCILER_COMMENT_AUTHOR:-github-actions[bot]}

body=$(mktemp)
{
  echo "$marker"
  if [ "$code" = 0 ] || [ "$code" = 2 ]; then
    cat "$out/plan.md"
  elif [ -z "${PLAN_EXITCODE:-}" ] && [ -s "$out/validate.err" ]; then
    printf '### reconciler: the manifests are not valid\n\nNothing was planned. Fix these (they are annotated on the diff too):\n\n````\n'
    head -c 20000 "$out/validate.err"
    printf '````\n'
  else
    printf '### reconciler plan failed\n\n````\n'
    tail -c 20000 "$out/plan.err" 2>/dev/null || echo "The plan did not run; see the workflow log."
    printf '````\n'
  fi
  printf '\n<sub>%s for %s · [workflow run](%s) · `plan --detailed-exitcode`: %s' \
    "reconciler plan${stack:+ of stack $stack}" "${HEAD_SHA:0:7}" "$(run_url)" "$code"
  if [ "$code" = 2 ]; then
    printf ' · on merge, exactly this plan is applied (the `reconciler-plan` artifact) if the workspace has not changed since'
  fi
  printf '</sub>\n'
} >"$body"

existing=$(gh api --paginate "$repo/issues/$PR_NUMBER/comments?per_page=100" |
  jq -rs --arg marker "$marker" --arg author "$author" \
    '[.[][] | select(.user.login == $author and (.body | startswith($marker)))][0].id // empty')
payload=$(jq -n --rawfile body "$body" '{body: $body}')
if [ -n "$existing" ]; then
  gh api --method PATCH "$repo/issues/comments/$existing" --input - <<<"$payload" >/dev/null
  echo "Updated the plan comment ($existing) on #$PR_NUMBER."
else
  gh api --method POST "$repo/issues/$PR_NUMBER/comments" --input - <<<"$payload" >/dev/null
  echo "Posted the plan comment on #$PR_NUMBER."
fi

case $code in
  0) conclusion=success title="No changes" ;;
  2) conclusion=neutral title="Changes: $(plan_counts "$out/plan.json")" ;;
  *) conclusion=failure title="The plan failed" ;;
esac
summary_file=$out/plan.md
[ -s "$summary_file" ] || summary_file=$body
jq -n --arg name "reconciler plan${stack:+ ($stack)}" --arg sha "$HEAD_SHA" --arg conclusion "$conclusion" \
  --arg title "$title" --rawfile summary "$summary_file" \
  '{name: $name, head_sha: $sha, status: "completed", conclusion: $conclusion,
    output: {title: $title, summary: $summary[:65535]}}' |
  gh api --method POST "$repo/check-runs" --input - >/dev/null
echo "Check run: $conclusion ($title)."
