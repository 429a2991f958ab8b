#!/usr/bin/env bash
# Applies main after a merge, and writes what it applied to the job summary.
#
# Exactly the reviewed plan when it still holds: the pull request's saved plan, if main's
# manifests are the ones it was made from (same digest) and `apply --plan`, given main's manifests
# and the same variables and flags, plans exactly that again. Otherwise, with
# RECONCILER_ON_STALE=replan (the default), a fresh plan of main
# is made, shown in the summary and applied, since main is the reviewed desired state; with
# RECONCILER_ON_STALE=fail nothing is applied and the job fails, for a person to look first.
# Replaces are refused unless RECONCILER_ALLOW_REPLACE=true; another apply holding the workspace's
# lock is waited for up to RECONCILER_LOCK_TIMEOUT.
# Inputs: REVIEWED_PR, REVIEWED_RUN, REVIEWED_NOTE (fetch-reviewed-plan.sh's outputs), RECONCILER_FRESH_PLAN.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apply_flags=(--lock-timeout "${RECONCILER_LOCK_TIMEOUT:-15m}")
[ "${RECONCILER_ALLOW_REPLACE:-false}" != true ] || apply_flags+=(--allow-replace)
work=$(mktemp -d)

# Applies a saved plan, then writes its markdown and the apply's output to the summary.
apply_plan() {
  local plan=$1 markdown=$2 what=$3 code=0
  echo "Applying $what: $(plan_counts "$plan")."
  # main's manifests (PATHS) and the plan's variables and flags: apply plans again from these and
  # compares; a plan of any other files or settings is refused before any write.
  reconciler apply "${paths[@]}" --plan "$plan" "${plan_flags[@]}" "${apply_flags[@]}" 2>&1 |
    tee "$work/apply.log" || code=$?
  {
    if [ "$code" = 0 ]; then
      printf '## reconciler apply: applied\n\nApplied %s.\n\n' "$what"
    else
      printf '## reconciler apply: failed\n\nApplying %s failed (exit code %s).\n\n' "$what" "$code"
    fi
    cat "$markdown"
    printf '\n<details><summary>apply output</summary>\n\n````text\n'
    cat "$work/apply.log"
    printf '````\n\n</details>\n'
  } | to_summary
  return "$code"
}

reason=""
if [ "${RECONCILER_FRESH_PLAN:-false}" = true ]; then
  reason="a fresh plan was asked for"
elif [ ! -s "$out/plan.json" ]; then
  reason="no reviewed plan (${REVIEWED_NOTE:-none was downloaded})"
elif [ "$(cat "$out/manifests.sha256")" != "$(manifests_digest)" ]; then
  reason="main's manifests are not the ones #${REVIEWED_PR:-?} planned (another change merged in between)"
else
  reviewed="the plan reviewed on #${REVIEWED_PR:-?} ([plan run](${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-}/actions/runs/${REVIEWED_RUN:-}))"
  code=0
  apply_plan "$out/plan.json" "$out/plan.md" "$reviewed" || code=$?
  # apply compares a saved plan with a new plan of main before its first write; "stale" (an object
  # changed live) or "differs" (anything else about the objects) is what a fresh plan answers.
  # Other refusals (another workspace, stack, deployer) are settings to fix: the job fails.
  if [ "$code" = 0 ] || ! grep -qE "the saved plan (is stale|differs)" "$work/apply.log"; then
    exit "$code"
  fi
  reason="the workspace changed since #${REVIEWED_PR:-?} was planned"
  if [ "${RECONCILER_ON_STALE:-replan}" = fail ]; then
    annotate error "title=reconciler apply" "Nothing applied: $reason. Re-run this workflow with a fresh plan once you have looked."
    printf '\n**Nothing was applied**: %s (RECONCILER_ON_STALE=fail). Look at what changed, then run this workflow by hand with `fresh-plan`.\n' \
      "$reason" | to_summary
    exit 1
  fi
fi

annotate warning "title=reconciler apply" "Applying a fresh plan of main: $reason."
code=0
reconciler plan "${paths[@]}" "${plan_flags[@]}" --format markdown --out "$work/plan.json" \
  >"$work/plan.md" || code=$?
if [ "$code" != 0 ]; then
  printf '## reconciler apply: failed\n\nThe fresh plan failed (%s); nothing was applied.\n' "$reason" | to_summary
  exit 1
fi
commit=${GITHUB_SHA:-HEAD}
apply_plan "$work/plan.json" "$work/plan.md" "a fresh plan of main at ${commit:0:7}, because $reason"
