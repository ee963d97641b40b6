#!/usr/bin/env bash
# What `make cloud-up` and `make cloud-down` run, sourced by each cloud's rendered script
# (k8s/<variant>/cloud.sh, from k8s/templates/cloud-<cloud>.sh.j2 and k8s/values/<cloud>.yaml).
#
#   step WHAT CHECK COMMAND   run COMMAND unless CHECK succeeds (it exists already): idempotent
#   capture VAR WHAT COMMAND  VAR=$(COMMAND), for the commands after it
#   note TEXT                 a line for the reader
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

dispatch() { # ACTION: up or down, the functions of the script that sourced this file
  case ${1:-} in
    up | down) "$1" ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
  esac
}
