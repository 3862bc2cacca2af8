# Sourced by build-image.sh and smoke-image.sh: which container engine, and how to call it here.
# Sets ENGINE, ENGINE_CMD (image/volume/ps verbs), BUILDER (build) and RUN_CMD (run).
#
# podman is preferred (rootful or rootless, no daemon); docker works for --official builds and
# for running (docker build has no -v for the wheel mount). Two sandbox quirks are handled here,
# both seen on the project's build machine (docs/deploy.md, "Built and run here"):
# - cgroups in hybrid mode (v1 controllers plus an empty v2 tree): crun refuses ("cgroups in
#   hybrid mode not supported"), runc runs; so runc where there is no pure cgroup v2;
# - rlimits that cannot be raised: podman asks for nofile=1048576 and runc/crun fail with
#   "setrlimit RLIMIT_NOFILE/NPROC: Operation not permitted"; so explicit limits below the
#   hard ones are passed when the hard limits are below podman's defaults.
# shellcheck shell=bash

if [ -n "${KIOSK_CONTAINER_ENGINE:-}" ]; then
  ENGINE=$KIOSK_CONTAINER_ENGINE
elif command -v podman >/dev/null; then
  ENGINE=podman
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  echo "no container engine: apt-get install podman (or start a Docker daemon)" >&2
  exit 1
fi

ENGINE_CMD=("$ENGINE")
extra=()
if [ "$ENGINE" = podman ]; then
  if [ ! -e /sys/fs/cgroup/cgroup.controllers ] && command -v runc >/dev/null; then
    ENGINE_CMD+=(--runtime runc)
  fi
  hard_files=$(ulimit -Hn)
  hard_procs=$(ulimit -Hu)
  if [ "$hard_files" != unlimited ] && [ "$hard_files" -lt 1048576 ]; then
    files=$(( hard_files < 16384 ? hard_files / 2 : 16384 ))
    extra+=(--ulimit "nofile=$files:$files")
  fi
  if [ "$hard_procs" != unlimited ]; then
    procs=$(( hard_procs < 16384 ? hard_procs / 2 : 16384 ))
    extra+=(--ulimit "nproc=$procs:$procs")
  fi
fi
# shellcheck disable=SC2034  # used by the scripts that source this file
BUILDER=("${ENGINE_CMD[@]}" build "${extra[@]}")
# shellcheck disable=SC2034
RUN_CMD=("${ENGINE_CMD[@]}" run "${extra[@]}")
