#!/usr/bin/env bash
# run_tests.sh - every test of kumo, on a fresh machine too.
#
#   ./run_tests.sh
#
# Stages: setup (Debian packages, cargo, the Python venv of tests/requirements.txt) -> one build of
# the workspace (profile `ci`: release with opt-level 1 for kumo's own crates, into target/ci; stack.sh
# and bench/ use release), preceded by the binaries of the rolling-upgrade test's build N+1
# (`--features compute/rpc-next`, copied to target/ci/kumo-next = KUMO_NEXT_BIN) -> cargo tests (nextest if installed) -> guest image
# (tools/guest-image/build.sh, cached, then boot-test.sh: one pass or fail) -> cloud image
# (tools/cloud-image/build.sh, Debian 12 with cloud-init, cached) -> end-to-end tests (pytest tests/e2e
# against a kumo started on a free port in a temp dir, with KUMO_TINY_IMAGE and KUMO_CLOUD_IMAGE set to
# the images) -> Tempest (tests/tempest/run.sh SERVICE, for each service in KUMO_TEMPEST_SERVICES,
# default: identity image compute).
# The last line is `run_tests: N passed, M failed` summed over the stages; skipped tests are not
# passes and are counted on the line before. Exit status 0 only when nothing failed and every stage ran.
#
# Environment: KUMO_E2E_TARGET=keystone-peer runs the end-to-end tests against the real Keystone;
# PYTEST_ARGS adds pytest arguments; CARGO_TARGET_DIR is honoured; KUMO_STAGE_TIMEOUT_<STAGE> (seconds)
# bounds a stage (defaults: BUILD 2700, CARGO 900, GUEST 300, CLOUD_IMAGE 1200, E2E 2700, TEMPEST 1200).
# KUMO_SKIP_SLOW=1 skips the slow stage and test (the Debian cloud-init guest); for local runs, never CI.
# KUMO_SKIP_RABBITMQ=1 lets crates/bus/tests/rabbitmq.rs pass (saying SKIPPED) where rabbitmq-server is
# missing; without it that test fails then. Setup installs rabbitmq-server (the `tests` packages).
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$PWD
# shellcheck source=tests/lib/common.sh
source "$ROOT/tests/lib/common.sh"
KUMO_LOG_TAG=run_tests

T_START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kumo-run-tests.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

PASSED=0 FAILED=0 SKIPPED=0
PROBLEMS=()    # stages that could not run or ended badly without failing tests
SUMMARY=()     # one line per stage

say() { printf '%s\n' "$*"; }
banner() { say ""; say "=== $* ==="; }

# record STAGE PASSED FAILED SKIPPED SECONDS [NOTE]
record() {
  PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3)); SKIPPED=$((SKIPPED + $4))
  SUMMARY+=("$(printf '%-12s %4d passed, %4d failed, %4d skipped  %5ds%s' "$1" "$2" "$3" "$4" "$5" "${6:+  ($6)}")")
  say "--- $1: $2 passed, $3 failed, $4 skipped in $5 s${6:+ ($6)}"
}

# a stage that could not run counts as one failure, so the last line never hides it
could_not_run() {
  PROBLEMS+=("$1: $2")
  record "$1" 0 1 0 "$3" "could not run: $2"
}

stage_timeout() { local v="KUMO_STAGE_TIMEOUT_$1"; echo "${!v:-$2}"; }

# run_logged LOG CMD... : run with output to the terminal and to LOG; returns the command's status
# (with pipefail, the pipeline's status is the command's unless tee itself fails)
run_logged() {
  local log=$1 rc=0; shift
  "$@" 2>&1 | tee "$log" || rc=$?
  return "$rc"
}

# ------------------------------------------------------------------ setup
banner "setup"
t0=$(date +%s)
if ! kumo_ensure_packages build tools tests network; then
  could_not_run setup "Debian packages could not be installed" "$(( $(date +%s) - t0 ))"
fi
HAVE_GUEST=1
if ! kumo_ensure_packages guest; then
  HAVE_GUEST=0
  say "the guest packages (QEMU, image build tools) could not be installed: no guest image stage"
fi
HAVE_CARGO=1
kumo_require_cargo || HAVE_CARGO=0
VENV=""
if VENV=$(kumo_test_venv "$ROOT"); then
  say "test venv: $VENV"
else
  VENV=""
fi
say "--- setup done in $(( $(date +%s) - t0 )) s"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export KUMO_BIN=${KUMO_BIN:-$TARGET_DIR/ci/kumo}

# ------------------------------------------------------------------ build (once)
BUILD_OK=0
banner "build: cargo build --profile ci --workspace --all-targets"
t0=$(date +%s)
# A cold target (a fresh clone, CI): incremental data only costs time there (dependencies are
# never incremental, and nothing earlier is reused); a warm one keeps the profile's setting.
[[ -d $TARGET_DIR/ci/incremental ]] || export CARGO_INCREMENTAL=0
# The rolling-upgrade test's build N+1 (tests/e2e/test_rolling_upgrade.py, docs/scale-out.md): the
# binaries with the compute crate's `rpc-next` feature, copied to kumo-next. Built first, in the same
# target dir (external crates are shared; compute and the crates above it are built twice), so that
# the normal build below leaves target/ci/kumo as build N. The test fails when this one did.
export KUMO_NEXT_BIN=$TARGET_DIR/ci/kumo-next
rm -f "$KUMO_NEXT_BIN"
if ((HAVE_CARGO)); then
  banner "build N+1: cargo build --profile ci --workspace --bins --features compute/rpc-next"
  t1=$(date +%s)
  if run_logged "$WORK/build-next.log" timeout -k 30 "$(stage_timeout BUILD 2700)" \
      cargo build --profile ci --workspace --bins --features compute/rpc-next &&
      cp "$TARGET_DIR/ci/kumo" "$KUMO_NEXT_BIN"; then
    say "--- build N+1: ok in $(( $(date +%s) - t1 )) s ($KUMO_NEXT_BIN)"
  else
    rm -f "$KUMO_NEXT_BIN"
    PROBLEMS+=("build N+1 (compute/rpc-next) failed: test_rolling_upgrade.py fails")
  fi
  # --timings: target/cargo-timings/cargo-timing.html says which crates the build's time went to
  # (a cold build took 1795 s here on 4edab04 with another build running beside it)
  if run_logged "$WORK/build.log" timeout -k 30 "$(stage_timeout BUILD 2700)" \
      cargo build --profile ci --workspace --all-targets --timings; then
    BUILD_OK=1
    say "--- build: ok in $(( $(date +%s) - t0 )) s"
  else
    could_not_run build "cargo build failed" "$(( $(date +%s) - t0 ))"
  fi
else
  could_not_run build "cargo is not installed" 0
fi

# ------------------------------------------------------------------ cargo tests
t0=$(date +%s)
if ((BUILD_OK)); then
  if cargo nextest --version >/dev/null 2>&1; then
    banner "cargo tests: cargo nextest run --cargo-profile ci --workspace"
    rc=0
    run_logged "$WORK/cargo.log" timeout -k 30 "$(stage_timeout CARGO 900)" \
      cargo nextest run --cargo-profile ci --workspace --no-fail-fast --no-tests=warn || rc=$?
    line=$(grep -E '^ *Summary \[' "$WORK/cargo.log" | tail -1 || true)
    num() { grep -oE "[0-9]+ $1" <<<"$line" | head -1 | grep -oE '^[0-9]+' || echo 0; }
    p=$(num passed); f=$(( $(num failed) + $(num 'timed out') )); s=$(num skipped)
  else
    banner "cargo tests: cargo test --profile ci --workspace"
    rc=0
    run_logged "$WORK/cargo.log" timeout -k 30 "$(stage_timeout CARGO 900)" \
      cargo test --profile ci --workspace --no-fail-fast || rc=$?
    read -r p f s < <(grep -E '^test result: ' "$WORK/cargo.log" | awk '
      { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) P += $i; if ($(i+1) ~ /^failed/) F += $i;
                                    if ($(i+1) ~ /^ignored/) S += $i } }
      END { print P+0, F+0, S+0 }')
    line="test result lines"
  fi
  dt=$(( $(date +%s) - t0 ))
  if [[ -z $line ]] || { ((rc != 0)) && ((f == 0)); }; then
    PROBLEMS+=("cargo tests: exit status $rc without a test failure to show for it")
    record "cargo tests" "$p" $((f + 1)) "$s" "$dt" "exit status $rc"
  else
    record "cargo tests" "$p" "$f" "$s" "$dt"
  fi
else
  could_not_run "cargo tests" "no build" 0
fi

# ------------------------------------------------------------------ guest image (kumo-tiny)
# Built once here; the e2e tests get it as KUMO_TINY_IMAGE. boot-test.sh boots it three times on TCG
# (plain, config drive, network: DHCP, metadata service, SSH, ACPI power-off) and counts as one test.
banner "guest image: tools/guest-image/build.sh, boot-test.sh"
t0=$(date +%s)
if ((!HAVE_GUEST)); then
  could_not_run "guest image" "QEMU and the image build tools could not be installed" 0
elif ! KUMO_TINY_IMAGE=$(kumo_guest_image "$ROOT"); then
  unset KUMO_TINY_IMAGE
  could_not_run "guest image" "tools/guest-image/build.sh failed" "$(( $(date +%s) - t0 ))"
else
  export KUMO_TINY_IMAGE
  say "kumo-tiny image: $KUMO_TINY_IMAGE"
  rc=0
  run_logged "$WORK/guest.log" timeout -k 30 "$(stage_timeout GUEST 300)" \
    "$ROOT/tools/guest-image/boot-test.sh" "$KUMO_TINY_IMAGE" || rc=$?
  if ((rc == 0)); then
    record "guest image" 1 0 0 "$(( $(date +%s) - t0 ))"
  else
    record "guest image" 0 1 0 "$(( $(date +%s) - t0 ))" "boot-test.sh exit status $rc"
  fi
fi

# ------------------------------------------------------------------ cloud image (Debian 12 + cloud-init)
# Built once here (tools/cloud-image/build.sh: debootstrap, ~4 min when not cached); the e2e test
# test_cloud_init_guest.py gets it as KUMO_CLOUD_IMAGE. KUMO_SKIP_SLOW=1 skips both (local runs
# only: CI never sets it). A failed build counts as one failure and the test then fails on the
# missing file instead of building again.
banner "cloud image: tools/cloud-image/build.sh"
t0=$(date +%s)
if [[ ${KUMO_SKIP_SLOW:-} == 1 ]]; then
  record "cloud image" 0 0 1 0 "KUMO_SKIP_SLOW=1"
elif ((EUID != 0)); then
  record "cloud image" 0 0 1 0 "not root: debootstrap and the guest test need root"
elif ((!HAVE_GUEST)); then
  could_not_run "cloud image" "QEMU and the image build tools could not be installed" 0
elif run_logged "$WORK/cloud-image.log" timeout -k 30 "$(stage_timeout CLOUD_IMAGE 1200)" \
    "$ROOT/tools/cloud-image/build.sh" && KUMO_CLOUD_IMAGE=$(tail -n1 "$WORK/cloud-image.log") &&
    [[ -f $KUMO_CLOUD_IMAGE ]]; then
  export KUMO_CLOUD_IMAGE
  say "cloud image: $KUMO_CLOUD_IMAGE"
  record "cloud image" 0 0 0 "$(( $(date +%s) - t0 ))" "built or cached; tested in e2e"
else
  export KUMO_CLOUD_IMAGE=$WORK/cloud-image-build-failed
  could_not_run "cloud image" "tools/cloud-image/build.sh failed" "$(( $(date +%s) - t0 ))"
fi

# ------------------------------------------------------------------ end-to-end tests
E2E_TARGET=${KUMO_E2E_TARGET:-kumo}
banner "e2e: pytest tests/e2e (target $E2E_TARGET)"
t0=$(date +%s)
if [[ -z $VENV ]]; then
  could_not_run e2e "no Python venv" 0
elif [[ $E2E_TARGET == kumo && ! -x $KUMO_BIN ]]; then
  could_not_run e2e "no kumo binary at $KUMO_BIN" 0
else
  rc=0
  # SIGINT on timeout: pytest then still runs the fixtures' teardown (kumo down, temp dirs removed)
  # shellcheck disable=SC2086 # PYTEST_ARGS is a list of words
  # 1621 s on 6bc97c9 here: the bound leaves room for a slower CI machine (--durations: the
  # slowest tests in the log, for whoever trims the stage)
  KUMO_BIN=$KUMO_BIN run_logged "$WORK/e2e.log" timeout -s INT -k 60 "$(stage_timeout E2E 2700)" \
    "$VENV/bin/python" -m pytest "$ROOT/tests/e2e" -q --durations=25 --junitxml="$WORK/e2e.xml" \
    ${PYTEST_ARGS:-} || rc=$?
  dt=$(( $(date +%s) - t0 ))
  if [[ -f $WORK/e2e.xml ]]; then
    read -r p f s < <("$VENV/bin/python" - "$WORK/e2e.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(x.get("tests", 0)) for x in suites)
f = sum(int(x.get("failures", 0)) + int(x.get("errors", 0)) for x in suites)
s = sum(int(x.get("skipped", 0)) for x in suites)
print(t - f - s, f, s)
EOF
    )
    if ((rc != 0 && rc != 1 && rc != 5)) || { ((rc == 1)) && ((f == 0)); }; then
      PROBLEMS+=("e2e: pytest exit status $rc")
      record e2e "$p" $((f + 1)) "$s" "$dt" "pytest exit status $rc"
    else
      record e2e "$p" "$f" "$s" "$dt"
    fi
  else
    could_not_run e2e "pytest wrote no report (exit status $rc)" "$dt"
  fi
fi

# ------------------------------------------------------------------ Tempest (tests/tempest/run.sh)
# One run per service that kumo serves; each prints `N passed, N failed, N skipped` last.
TEMPEST_SERVICES=${KUMO_TEMPEST_SERVICES:-identity image compute network volume}
for svc in $TEMPEST_SERVICES; do
  t0=$(date +%s)
  if [[ ! -x $ROOT/tests/tempest/run.sh ]]; then
    could_not_run "tempest $svc" "tests/tempest/run.sh is missing" 0
    continue
  fi
  banner "tempest: tests/tempest/run.sh $svc"
  rc=0
  KUMO_BIN=$KUMO_BIN run_logged "$WORK/tempest-$svc.log" timeout -s INT -k 60 "$(stage_timeout TEMPEST 1200)" \
    "$ROOT/tests/tempest/run.sh" "$svc" || rc=$?
  dt=$(( $(date +%s) - t0 ))
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$WORK/tempest-$svc.log" | tail -1 || true)
  if [[ -n $last ]]; then
    read -r p f s < <(sed -E 's/^([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/' <<<"$last")
    if ((rc != 0 && f == 0)); then
      PROBLEMS+=("tempest $svc: exit status $rc")
      record "tempest $svc" "$p" $((f + 1)) "$s" "$dt" "exit status $rc"
    else
      record "tempest $svc" "$p" "$f" "$s" "$dt"
    fi
  else
    could_not_run "tempest $svc" "no 'N passed, N failed, N skipped' line (exit status $rc)" "$dt"
  fi
done

# ------------------------------------------------------------------ summary
banner "summary"
for l in "${SUMMARY[@]}"; do say "$l"; done
for p in "${PROBLEMS[@]}"; do say "problem: $p"; done
say "total time: $(( $(date +%s) - T_START )) s"
say "run_tests: $SKIPPED skipped (not counted as passes)"
say "run_tests: $PASSED passed, $FAILED failed"
if ((FAILED > 0 || ${#PROBLEMS[@]} > 0)); then
  exit 1
fi
exit 0
