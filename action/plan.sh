#!/usr/bin/env bash
# Plans against the workspace, for a pull request or the nightly drift check. Writes
# $RECONCILER_OUT/{plan.json, plan.md, plan.err, manifests.sha256}, the markdown plan to the job
# summary, and the step output `exitcode`: 0 no changes, 2 changes, 1 error. The step fails only
# on an error: changes are what a pull request is for, not a failure.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mkdir -p "$out"
rm -f "$out/plan.json" "$out/plan.md" "$out/plan.err"
code=0
reconciler plan "${paths[@]}" "${plan_flags[@]}" --detailed-exitcode --format markdown \
  --out "$out/plan.json" >"$out/plan.md" 2>"$out/plan.err" || code=$?
cat "$out/plan.err" >&2
# A usage error also exits 2; only a written plan is a plan.
if [ "$code" = 2 ] && [ ! -s "$out/plan.json" ]; then
  code=1
fi
set_output exitcode "$code"
case $code in
  0 | 2)
    manifests_digest >"$out/manifests.sha256"
    cat "$out/plan.md"
    to_summary <"$out/plan.md"
    echo "reconciler plan: $(plan_counts "$out/plan.json") (exit code $code)"
    ;;
  *)
    annotate error "title=reconciler plan" "$(head -c 4000 "$out/plan.err")"
    exit 1
    ;;
esac
