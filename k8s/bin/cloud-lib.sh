#!/usr/bin/env bash
# What `make cloud-up` and `make cloud-down` run, sourced by each cloud's rendered script
# (k8s/<variant>/cloud.sh, from k8s/templates/cloud-<cloud>.sh.j2 and k8s/values/<cloud>.yaml).
#
#   step WHAT CHECK COMMAND   run COMMAND unless CHECK succeeds (it exists already): idempotent
#   capture VAR WHAT COMMAND  VAR=$(COMMAND), for the commands after it
#   note TEXT                 a line for the reader
#   listed LIST               true when LIST prints something, or in a dry run; a LIST that
#                             fails stops the script (it cannot tell what exists: nothing goes)
#   quota WHAT NEED FIX COMMAND   the quota COMMAND reads; a problem line when under NEED
#   still_billing CLOUD       cloud-down's last lines: what it kept, per month (jobs/kube/estimate.py)
#
# CHECK and COMMAND are shell text, printed as they run. DRY_RUN=1 prints every command and
# runs none (no cloud CLI needed): a captured VAR then stands as the text "$VAR".

DRY_RUN=${DRY_RUN:-0}
STEPS=0

note() { echo "# $*"; }

step() { # WHAT CHECK COMMAND
  local what=$1 check=$2 command=$3
  STEPS=$((STEPS + 1))
  echo "# $STEPS. $what"
  if [[ $DRY_RUN == 1 ]]; then
    [[ -n $check ]] && echo "#    (skipped when this succeeds: $check)"
    echo "$command"
    return 0
  fi
  if [[ -n $check ]] && eval "$check" >/dev/null 2>&1; then
    echo "#    exists already: kept"
    return 0
  fi
  echo "+ $command"
  eval "$command"
}

capture() { # VAR WHAT COMMAND
  local var=$1 what=$2 command=$3
  echo "# $what"
  if [[ $DRY_RUN == 1 ]]; then
    echo "$var=\$($command)"
    printf -v "$var" '%s' "\$$var"
    return 0
  fi
  echo "+ $var=\$($command)"
  local value
  value=$(eval "$command")
  printf -v "$var" '%s' "$value"
  echo "#    $var=$value"
}

listed() { # LIST
  [[ $DRY_RUN == 1 ]] && return 0
  local out
  if ! out=$(eval "$1"); then
    echo "error: cannot tell whether it exists ($1 failed: credentials, project or region?); nothing was deleted" >&2
    exit 1
  fi
  [[ -n $out ]]
}

quota() { # WHAT NEED FIX COMMAND
  local what=$1 need=$2 fix=$3 command=$4
  # A quota that cannot be read (no permission yet) is not a stop either.
  capture QUOTA "$what: the T4 pool needs $need" "$command 2>/dev/null || true"
  [[ $DRY_RUN == 1 ]] && return 0
  # Several lines (GKE Spot: the preemptible quota and the regular one it falls back on):
  # the largest is what the pool can use.
  local best="" n
  for n in $QUOTA; do
    [[ $n =~ ^[0-9]+(\.[0-9]+)?$ ]] && { [[ -z $best ]] || ((${n%.*} > ${best%.*})); } && best=$n
  done
  QUOTA=$best
  # Not a stop: the rest can be made while a quota request waits (hours to days).
  if [[ -z $QUOTA ]] || ((${QUOTA%.*} < need)); then
    echo "problem: $what is ${QUOTA:-unknown}, under the $need the T4 pool can use: no T4 node will start (fix: $fix)"
  else
    echo "#    ok: $QUOTA"
  fi
}

still_billing() { # CLOUD
  local args=(--after-cloud-down "$1")
  [[ ${DELETE_REGISTRY:-0} == 1 ]] && args+=(--registry-deleted)
  local lines
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if lines=$(PYTHONPATH="$repo" "${PY:-python3}" -m jobs.kube.estimate "${args[@]}" 2>/dev/null); then
    while IFS= read -r line; do echo "# $line"; done <<<"$lines"
  else
    note "what still bills: python -m jobs.kube.estimate ${args[*]}"
  fi
}

dispatch() { # ACTION: up or down, the functions of the script that sourced this file
  case ${1:-} in
    up | down) "$1" ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
  esac
}
