#!/usr/bin/env bash
# Validates the manifests offline (no workspace, no credentials). On GitHub each problem also
# becomes an error annotation on its file and line, so the pull request's diff shows it in place;
# the problems are kept in $RECONCILER_OUT/validate.err for the pull request comment.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mkdir -p "$out"
errors=$out/validate.err  # pr-comment.sh shows it on the pull request
if reconciler validate "${paths[@]}" "${validate_flags[@]}" 2>"$errors"; then
  exit 0
fi
cat "$errors" >&2
if [ "${GITHUB_ACTIONS:-}" = true ]; then
  # Problems print as `path:line:col: message`; anything else is annotated without a place.
  while IFS= read -r line; do
    if [[ $line =~ ^([^:]+):([0-9]+):([0-9]+):\ (.*)$ ]]; then
      annotate error "file=${BASH_REMATCH[1]},line=${BASH_REMATCH[2]},col=${BASH_REMATCH[3]},title=reconciler validate" \
        "${BASH_REMATCH[4]}"
    elif [ -n "$line" ]; then
      annotate error "title=reconciler validate" "$line"
    fi
  done <"$errors"
fi
exit 1
