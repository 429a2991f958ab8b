#!/usr/bin/env bash
# Keeps ONE open drift issue per stack in step with the nightly plan: opened (or its body
# replaced) while the workspace differs from main, closed with a comment once it matches again.
# The issue is found by its label and exact title. Needs GH_TOKEN, GITHUB_REPOSITORY, PLAN_EXITCODE.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${GITHUB_REPOSITORY:?}" "${PLAN_EXITCODE:?}"
repo="repos/$GITHUB_REPOSITORY"
label=${RECONCILER_DRIFT_LABEL:-reconciler-drift}
title="reconciler: the workspace has drifted from main (stack ${stack:-default})"

issue=$(gh api --paginate "$repo/issues?state=open&labels=$label&per_page=100" |
  jq -rs --arg title "$title" '[.[][] | select(.pull_request == null and .title == $title)][0].number // empty')

case $PLAN_EXITCODE in
  2)
    body=$(mktemp)
    {
      echo "$marker"
      printf 'The nightly plan found the workspace different from the manifests on main ([run](%s)).\n' "$(run_url)"
      printf 'Either apply main again (run the apply workflow with `fresh-plan`) to undo the out-of-band\n'
      printf 'change, or change the manifests to keep it. This issue is updated every night and closed\n'
      printf 'when the workspace matches main again.\n\n'
      cat "$out/plan.md"
    } >"$body"
    annotate warning "title=reconciler drift" "The workspace has drifted from main: $(plan_counts "$out/plan.json")."
    if [ -n "$issue" ]; then
      jq -n --rawfile body "$body" '{body: $body}' |
        gh api --method PATCH "$repo/issues/$issue" --input - >/dev/null
      echo "Updated drift issue #$issue."
    else
      gh api "$repo/labels/$label" >/dev/null 2>&1 ||
        jq -n --arg name "$label" '{name: $name, color: "d93f0b", description: "reconciler: live workspace differs from main"}' |
        gh api --method POST "$repo/labels" --input - >/dev/null
      jq -n --arg title "$title" --arg name "$label" --rawfile body "$body" \
        '{title: $title, body: $body, labels: [$name]}' |
        gh api --method POST "$repo/issues" --input - >/dev/null
      echo "Opened a drift issue."
    fi
    ;;
  0)
    if [ -n "$issue" ]; then
      jq -n --arg url "$(run_url)" '{body: "The workspace matches main again ([run](\($url))). Closing."}' |
        gh api --method POST "$repo/issues/$issue/comments" --input - >/dev/null
      jq -n '{state: "closed", state_reason: "completed"}' |
        gh api --method PATCH "$repo/issues/$issue" --input - >/dev/null
      echo "No drift: closed #$issue."
    else
      echo "No drift."
    fi
    ;;
  *)
    echo "The plan failed (exit code $PLAN_EXITCODE); the drift issue is left as it is." >&2
    exit 1
    ;;
esac
