#!/usr/bin/env bash
# Build docker/Dockerfile and smoke-run the image, on hosts with or without a working container runtime.
#
#   bash scripts/docker_check.sh [options]
#
# 1. Engine: docker when its daemon answers, else podman (apt-installed when missing and we are root).
# 2. Base: the Dockerfile's pinned CUDA image (ARG BASE_IMAGE's default) when it can be pulled, else a Debian
#    bookworm root made with debootstrap, imported as localhost/nws-bench-base:bookworm and reused next time.
# 3. Build: the project's Dockerfile with --build-arg BASE_IMAGE=<that base>; the host's CA bundle goes to pip
#    as the build secret ca_bundle (needed behind a TLS-intercepting proxy).
# 4. Smoke job: the image's ENTRYPOINT with dataset=digits model=mlp trainer=quick sampler=nws logger=offline,
#    host folders mounted at /results, /app/outputs and /data. With `run` where containers can run (plus the
#    GPU when the host has one); where they cannot (podman's OCI runtime refused), as a RUN step of a second
#    build stage on top of the image, built with chroot isolation and the same folders mounted (-v).
# 5. Checks: a result row in <out>/results/runs/, written by uid 1000, and an offline W&B run
#    (<out>/outputs/.../wandb/offline-run-*/*.wandb). Then it prints what it verified and what it could not.
#
# Without --keep-image the image (several GB: torch with its CUDA libraries) is removed at the end; the Debian
# base (~120 MB) stays cached. Exit status 0 only when the build and every check passed.
set -euo pipefail

PROG=docker_check
PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERFILE=""
ENGINE=auto
BASE=auto
TAG=localhost/nws-bench:check
OUT=""
KEEP_IMAGE=0
REBUILD_BASE=0
GPUS=auto
CA=auto
INSTALL=1
MIN_FREE_GB=20
PULL_TIMEOUT=900
DEBIAN_BASE=localhost/nws-bench-base:bookworm
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SMOKE_ARGS=(dataset=digits model=mlp trainer=quick sampler=nws logger=offline progress=false)

usage() {
    cat <<EOF
Usage: bash scripts/docker_check.sh [options]
  --project DIR     build context (default: the repository holding this script: $PROJECT)
  --dockerfile F    Dockerfile (default: DIR/docker/Dockerfile)
  --engine E        auto (default), docker or podman
  --base B          auto (default: the pinned CUDA base if it can be pulled, else Debian bookworm),
                    pinned (fail when it cannot be pulled), debian, or an image reference
  --gpus G          auto (default: when nvidia-smi works and containers can run), yes or no
  --ca-bundle F     CA bundle passed to pip in the build (default: the host's PIP_CERT, REQUESTS_CA_BUNDLE,
                    SSL_CERT_FILE or pip's global.cert, when set); none: pass nothing
  --out DIR         where the smoke job's results/, outputs/, data/ and the logs go (default: a new
                    /var/tmp/nws-docker-check.XXXXXX, kept)
  --tag T           image tag (default: $TAG)
  --keep-image      keep the built image (default: remove it at the end)
  --rebuild-base    remake the cached Debian base ($DEBIAN_BASE)
  --no-install      never apt-get install podman or debootstrap
  --pull-timeout S  give up pulling the pinned base after S seconds (default: $PULL_TIMEOUT)
  --min-free-gb N   refuse to build with less free disk in the engine's storage (default: $MIN_FREE_GB)
  --nice            run the build at the lowest CPU and I/O priority (nice 19, ionice idle): kinder to a shared
                    machine, but much slower while anything else runs (default: normal priority)
  --print-base      print the Dockerfile's default BASE_IMAGE and exit
Each line says how many seconds have passed since the start; the last one gives each stage's time.
EOF
}

T0=$(date +%s)
say() { printf '%s [%4ss]: %s\n' "$PROG" "$(( $(date +%s) - T0 ))" "$*"; }
VERIFIED=()
NOT_VERIFIED=()
ok() { VERIFIED+=("$*"); say "ok: $*"; }
miss() { NOT_VERIFIED+=("$*"); say "not verified: $*"; }
summary() {
    local line
    echo "== verified"
    for line in "${VERIFIED[@]}"; do echo "  + $line"; done
    echo "== not verified"
    if [ ${#NOT_VERIFIED[@]} -eq 0 ]; then echo "  (nothing)"; fi
    for line in "${NOT_VERIFIED[@]}"; do echo "  - $line"; done
}
die() {
    [ ${#VERIFIED[@]} -gt 0 ] && summary >&2
    printf '%s: FAILED: %s\n' "$PROG" "$*" >&2
    exit 1
}
need_arg() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi; }
last_line() { { grep -v '^[[:space:]]*$' || true; } | tail -n 1 | cut -c1-300; }  # stdin's last non-blank line, or nothing
now() { date +%s; }
gib() { awk -v b="$1" 'BEGIN { printf "%.1f GiB", b / 1073741824 }'; }

PRINT_BASE=0
NICE_BUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --project) need_arg "$@"; PROJECT=$(cd "$2" 2>/dev/null && pwd) || die "--project $2: no such directory"; shift 2 ;;
        --dockerfile) need_arg "$@"; DOCKERFILE=$2; shift 2 ;;
        --engine) need_arg "$@"; ENGINE=$2; shift 2 ;;
        --base) need_arg "$@"; BASE=$2; shift 2 ;;
        --gpus) need_arg "$@"; GPUS=$2; shift 2 ;;
        --ca-bundle) need_arg "$@"; CA=$2; shift 2 ;;
        --out) need_arg "$@"; OUT=$2; shift 2 ;;
        --tag) need_arg "$@"; TAG=$2; shift 2 ;;
        --keep-image) KEEP_IMAGE=1; shift ;;
        --rebuild-base) REBUILD_BASE=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        --min-free-gb) need_arg "$@"; MIN_FREE_GB=$2; shift 2 ;;
        --pull-timeout) need_arg "$@"; PULL_TIMEOUT=$2; shift 2 ;;
        --print-base) PRINT_BASE=1; shift ;;
        --nice) NICE_BUILD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
case "$ENGINE" in auto|docker|podman) ;; *) die "--engine must be auto, docker or podman, not $ENGINE" ;; esac
case "$GPUS" in auto|yes|no) ;; *) die "--gpus must be auto, yes or no, not $GPUS" ;; esac
case "$MIN_FREE_GB$PULL_TIMEOUT" in *[!0-9]*) die "--min-free-gb and --pull-timeout take whole numbers" ;; esac
DOCKERFILE=${DOCKERFILE:-$PROJECT/docker/Dockerfile}
[ -f "$DOCKERFILE" ] || die "no Dockerfile at $DOCKERFILE"
[ -f "$PROJECT/pyproject.toml" ] || die "$PROJECT has no pyproject.toml: not the project's root (use --project)"

# The pinned base: ARG BASE_IMAGE's default, declared before the FROM that uses it.
PINNED=$(sed -n 's/^[[:space:]]*ARG[[:space:]]\{1,\}BASE_IMAGE=\([^[:space:]]\{1,\}\).*/\1/p' "$DOCKERFILE" | head -n 1)
[ -n "$PINNED" ] || die "$DOCKERFILE has no ARG BASE_IMAGE=<default>"
if [ "$PRINT_BASE" = 1 ]; then echo "$PINNED"; exit 0; fi

# A registry-less reference is Docker Hub's; podman wants it said (no short-name search is configured here).
qualify() {
    local first=${1%%/*}
    if [ "$first" = "$1" ] || { [[ $first != *.* ]] && [[ $first != *:* ]] && [ "$first" != localhost ]; }; then
        echo "docker.io/$1"
    else
        echo "$1"
    fi
}

NICE=()  # --nice: the build at the lowest priority (opt-in: on a busy machine it can take many times longer)
if [ "$NICE_BUILD" = 1 ]; then
    command -v nice >/dev/null && NICE+=(nice -n 19)
    command -v ionice >/dev/null && ionice -c3 true 2>/dev/null && NICE+=(ionice -c3)
fi

T_START=$(now)
say "project $PROJECT, Dockerfile ${DOCKERFILE#"$PROJECT"/}, pinned base $PINNED"

apt_install() {  # apt_install WHY PACKAGE...: install when we may, else die saying what is missing
    local why=$1; shift
    if [ "$INSTALL" = 0 ]; then die "$why, and --no-install forbids apt-get install $*"; fi
    if [ "$(id -u)" != 0 ]; then die "$why; as root this script would apt-get install $*"; fi
    command -v apt-get >/dev/null || die "$why, and there is no apt-get to install $*"
    say "installing $* with apt-get: $why"
    local log=${TMPDIR:-/tmp}/$PROG-apt.$$.log
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >"$log" 2>&1 \
           || { apt-get update >>"$log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1; }; }; then
        die "apt-get install $* failed: $(last_line <"$log")"
    fi
    rm -f "$log"
    ok "installed $* (apt-get)"
}

# ------------------------------------------------------------------------------------------------ engine
docker_ok() { command -v docker >/dev/null && timeout 30 docker info >/dev/null 2>&1; }
podman_ok() { command -v podman >/dev/null && timeout 60 podman info >/dev/null 2>&1; }
if [ "$ENGINE" = auto ]; then
    if docker_ok; then ENGINE=docker
    else
        command -v docker >/dev/null && say "docker: $(timeout 30 docker info 2>&1 | grep -m1 -iE 'cannot|error' | cut -c1-150 || true): trying podman"
        command -v podman >/dev/null || apt_install "no docker daemon answers and podman is missing" podman
        ENGINE=podman
    fi
elif [ "$ENGINE" = podman ] && ! command -v podman >/dev/null; then
    apt_install "podman is missing" podman
fi
if [ "$ENGINE" = docker ]; then
    docker_ok || die "docker: $(docker info 2>&1 | last_line)"
    export DOCKER_BUILDKIT=1  # the Dockerfile's RUN --mount=type=secret needs BuildKit
else
    podman_ok || die "podman info fails: $(podman info 2>&1 | last_line)"
fi
E=$ENGINE
say "engine: $($E --version 2>/dev/null | head -n 1)"
image_exists() { $E image inspect "$1" >/dev/null 2>&1; }

# Free disk where the engine keeps images.
if [ "$E" = podman ]; then STORE=$(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null || true)
else STORE=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true); fi
STORE_DF=$STORE
while [ -n "$STORE_DF" ] && [ ! -d "$STORE_DF" ]; do STORE_DF=$(dirname "$STORE_DF"); done
free_bytes() { df -PB1 "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'; }
FREE0=$(free_bytes "${STORE_DF:-/}")
if [ -n "$FREE0" ] && [ "$FREE0" -lt $((MIN_FREE_GB * 1073741824)) ]; then
    die "only $(gib "$FREE0") free in ${STORE_DF:-/} (the image needs ~10 GiB while it builds; --min-free-gb $MIN_FREE_GB)"
fi

# ------------------------------------------------------------------------------------------------ out dir
if [ -z "$OUT" ]; then OUT=$(mktemp -d /var/tmp/nws-docker-check.XXXXXX)
else mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); fi
if compgen -G "$OUT/results/runs/*.json" >/dev/null; then
    die "$OUT/results/runs already holds rows: the harness would skip the smoke run (resume); give an empty --out"
fi
mkdir -p "$OUT/results" "$OUT/outputs" "$OUT/data" "$OUT/ctx"
chmod 0777 "$OUT/results" "$OUT/outputs" "$OUT/data"  # the container writes as uid 1000
LOG=$OUT/build.log
: >"$LOG"
say "logs and smoke results in $OUT"

# ------------------------------------------------------------------------------------------------ base
debian_base() {
    miss "the CUDA base's own content (Ubuntu 24.04 with Python 3.12, its user ubuntu that the Dockerfile deletes, NVIDIA's libraries): Debian $DEBIAN_SUITE has Python 3.11 and no such user"
    if image_exists "$DEBIAN_BASE" && [ "$REBUILD_BASE" = 0 ]; then
        say "Debian base: cached $DEBIAN_BASE (--rebuild-base remakes it)"
        return
    fi
    command -v debootstrap >/dev/null || apt_install "debootstrap (for the Debian base) is missing" debootstrap
    [ "$(id -u)" = 0 ] || die "debootstrap needs root to make the Debian base"
    local root t0
    root=$(mktemp -d /var/tmp/nws-debootstrap.XXXXXX)
    t0=$(now)
    say "making the Debian $DEBIAN_SUITE base with debootstrap (minbase, $DEBIAN_MIRROR)"
    if ! "${NICE[@]}" debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$OUT/debootstrap.log" 2>&1; then
        rm -rf "$root"
        why=$(grep -E '^E:' "$OUT/debootstrap.log" | last_line || true)
        die "debootstrap failed: ${why:-$(last_line <"$OUT/debootstrap.log")} (log: $OUT/debootstrap.log)"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    # An imported root has no config: give it the PATH that Debian's and NVIDIA's images set.
    if ! tar -C "$root" -c . | $E import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$DEBIAN_BASE" >>"$OUT/debootstrap.log" 2>&1; then
        rm -rf "$root"
        die "$E import of the Debian root failed: $(last_line <"$OUT/debootstrap.log")"
    fi
    rm -rf "$root"
    say "Debian base $DEBIAN_BASE made in $(( $(now) - t0 )) s"
}

BASE_KIND=""
case "$BASE" in
    auto|pinned)
        BASE_REF=$(qualify "$PINNED")
        if image_exists "$BASE_REF"; then
            say "pinned base already present: $BASE_REF"
            BASE_KIND=pinned
        else
            say "pulling the pinned base $BASE_REF (timeout ${PULL_TIMEOUT}s)"
            if timeout "$PULL_TIMEOUT" "$E" pull "$BASE_REF" >"$OUT/pull.log" 2>&1; then
                BASE_KIND=pinned
            else
                why=$(last_line <"$OUT/pull.log")
                [ "$BASE" = pinned ] && die "cannot pull the pinned base $BASE_REF: $why"
                miss "CUDA base not pulled ($why): built on Debian $DEBIAN_SUITE instead"
                BASE_REF=$DEBIAN_BASE
                BASE_KIND=debian
                debian_base
            fi
        fi
        [ "$BASE_KIND" = pinned ] && ok "pinned CUDA base $BASE_REF is available"
        ;;
    debian)
        miss "CUDA base not tried (--base debian): built on Debian $DEBIAN_SUITE instead"
        BASE_REF=$DEBIAN_BASE; BASE_KIND=debian; debian_base ;;
    *)
        BASE_REF=$BASE; BASE_KIND=other
        miss "CUDA base not used (--base $BASE)"
        if ! image_exists "$BASE_REF"; then
            timeout "$PULL_TIMEOUT" "$E" pull "$BASE_REF" >"$OUT/pull.log" 2>&1 \
                || die "cannot pull --base $BASE_REF: $(last_line <"$OUT/pull.log")"
        fi ;;
esac

# ------------------------------------------------------------------------------------------------ containers?
RUN_MODE=run
if ! $E run --rm "$BASE_REF" true >"$OUT/run-probe.log" 2>&1; then
    why=$(last_line <"$OUT/run-probe.log")
    [ "$E" = docker ] && die "docker cannot run a container: $why"
    RUN_MODE=stage
    miss "containers cannot run here ($why): built with --isolation chroot, smoke job run as a build step, not by \`run\`"
fi
ISOLATION=()
[ "$RUN_MODE" = stage ] && ISOLATION=(--isolation chroot)

GPU_FLAGS=()
HAVE_GPU=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then HAVE_GPU=1; fi
case "$GPUS" in
    yes)
        [ "$RUN_MODE" = run ] || die "--gpus yes, but containers cannot run here"
        [ "$HAVE_GPU" = 1 ] || die "--gpus yes, but nvidia-smi finds no GPU on this host" ;;
    auto)
        if [ "$HAVE_GPU" = 1 ] && [ "$RUN_MODE" = run ]; then GPUS=yes; else GPUS=no
            if [ "$HAVE_GPU" = 0 ]; then miss "no GPU on this host: the image's CUDA path (run --gpus all, torch.cuda) not exercised"
            else miss "this host has a GPU but containers cannot run: the image's CUDA path not exercised"; fi
        fi ;;
    no) miss "GPU run not asked for (--gpus no)" ;;
esac
if [ "$GPUS" = yes ]; then
    if [ "$E" = docker ]; then GPU_FLAGS=(--gpus all); else GPU_FLAGS=(--device nvidia.com/gpu=all); fi
    SMOKE_ARGS+=(device=cuda)
fi

# ------------------------------------------------------------------------------------------------ CA bundle
if [ "$CA" = auto ]; then
    CA=""
    for c in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}"; do
        if [ -n "$c" ] && [ -f "$c" ]; then CA=$c; break; fi
    done
    if [ -z "$CA" ] && command -v pip3 >/dev/null; then
        c=$(pip3 config list 2>/dev/null | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p" | head -n 1)
        if [ -n "$c" ] && [ -f "$c" ]; then CA=$c; fi
    fi
elif [ "$CA" = none ]; then CA=""
else [ -f "$CA" ] || die "--ca-bundle $CA: no such file"; fi
SECRET=()
if [ -n "$CA" ]; then
    SECRET=(--secret "id=ca_bundle,src=$CA")
    say "pip in the build trusts the host's CA bundle $CA (build secret ca_bundle, not stored in the image)"
else
    say "no CA bundle passed to pip (--ca-bundle FILE behind a TLS-intercepting proxy)"
fi

# ------------------------------------------------------------------------------------------------ build
IMAGES_BEFORE=""
cleanup_images() {
    $E rmi -f "$TAG-smoke" >/dev/null 2>&1 || true  # the smoke stage's image: never needed afterwards
    [ "$KEEP_IMAGE" = 1 ] && return
    $E rmi -f "$TAG" >/dev/null 2>&1 || true
    # podman keeps each step's layer as an untagged image (its build cache): drop those made since this build
    # began (an image another podman build makes meanwhile would go too)
    if [ "$E" = podman ] && [ -n "$IMAGES_BEFORE" ]; then
        local id
        for id in $(podman images -a -q --no-trunc 2>/dev/null); do
            case " $IMAGES_BEFORE " in *" $id "*) ;; *) podman rmi -f "$id" >/dev/null 2>&1 || true ;; esac
        done
    fi
}
trap 'cleanup_images' EXIT

BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_REF")
if git -C "$PROJECT" rev-parse HEAD >/dev/null 2>&1; then
    BUILD_ARGS+=(--build-arg "VCS_REF=$(git -C "$PROJECT" rev-parse HEAD)")
fi
PULL=()
[ "$BASE_KIND" = debian ] && [ "$E" = podman ] && PULL=(--pull=never)  # docker build's --pull is a yes/no flag
PROGRESS=()
[ "$E" = docker ] && PROGRESS=(--progress=plain)

build() {  # build LOGFILE ARGS...: the engine's build (niced with --nice), full output in LOGFILE, its STEP lines shown
    local log=$1; shift
    set +e
    "${NICE[@]}" "$E" build "$@" >"$log" 2>&1 &
    local pid=$! rc
    tail -n +1 -F --pid="$pid" "$log" 2>/dev/null | grep --line-buffered -E '^(STEP [0-9]+/[0-9]+: |#[0-9]+ \[[^]]*[0-9]+/[0-9]+\] |torch [0-9])' \
        | cut -c1-150 | sed -u 's/^/    /'
    wait "$pid"; rc=$?
    set -e
    return $rc
}

say "building $TAG on $BASE_REF (${NICE[*]:-not niced}; log $LOG)"
BUILD_START=$(now)
[ "$E" = podman ] && IMAGES_BEFORE=" $(podman images -a -q --no-trunc 2>/dev/null | tr '\n' ' ') "
if ! build "$LOG" "${ISOLATION[@]}" "${PULL[@]}" "${PROGRESS[@]}" "${SECRET[@]}" "${BUILD_ARGS[@]}" \
        -f "$DOCKERFILE" -t "$TAG" "$PROJECT"; then
    step=$(grep -E '^(STEP [0-9]+/|#[0-9]+ \[)' "$LOG" | last_line | cut -c1-80 || true)
    # pip's or apt's own message first (buildah's "Error: building at STEP" only repeats the command)
    err=$(grep -E '^(#[0-9]+ [0-9.]+ )?(ERROR: |E: |error: )' "$LOG" | last_line || true)
    [ -n "$err" ] || err=$(grep -E '^(Error|ERROR)' "$LOG" | last_line | cut -c1-200 || true)
    die "image build failed at ${step:-an early step}...: ${err:-$(last_line <"$LOG")} (full log: $LOG)"
fi
T_BUILD=$(( $(now) - BUILD_START ))
TORCH=$(grep -E '^torch [0-9]' "$LOG" | tail -n 1 || true)
SIZE=$($E image inspect --format '{{.Size}}' "$TAG" 2>/dev/null || echo 0)
FREE_BUILT=$(free_bytes "${STORE_DF:-/}")
ok "image $TAG built in ${T_BUILD} s on $BASE_REF ($(gib "$SIZE"); ${TORCH:-torch version not printed})"

# The image's configuration: the non-root user and the entry point.
USER_CFG=$($E image inspect --format '{{.Config.User}}' "$TAG")
EP=$($E image inspect --format '{{json .Config.Entrypoint}}' "$TAG")
case "$USER_CFG" in 1000|1000:*|nws|nws:*) ok "the image runs as USER $USER_CFG" ;; *) die "the image's USER is '$USER_CFG', not 1000 (nws)" ;; esac
case "$EP" in '["python","-m","bench.run"'*) ok "ENTRYPOINT $EP" ;; *) die "unexpected ENTRYPOINT $EP" ;; esac

# ------------------------------------------------------------------------------------------------ smoke job
MOUNTS=(-v "$OUT/results:/results" -v "$OUT/outputs:/app/outputs" -v "$OUT/data:/data")
SMOKE_LOG=$OUT/smoke.log
# Inside the image, before the job: its user is uid 1000 and the build left no CA bundle behind.
# shellcheck disable=SC2016  # expanded inside the image, not here
PROBE='test "$(id -u)" = 1000 || { echo "PROBE: runs as uid $(id -u), not 1000"; exit 1; }; '
PROBE+='if [ -e /run/secrets/ca_bundle ]; then echo "PROBE: /run/secrets/ca_bundle is in the image"; exit 1; fi'
# The job's own last error line (a Python exception, Hydra's message), not the engine's summary of the failure.
job_error() { grep -E '^([A-Za-z_.]*(Error|Exception)\b|ERROR|error:)' "$1" | grep -vE '^Error: (building at STEP|.*exit status)' | last_line || true; }
say "smoke job: <entrypoint> ${SMOKE_ARGS[*]}"
T0=$(now)
if [ "$RUN_MODE" = run ]; then
    $E run --rm --entrypoint sh "$TAG" -c "$PROBE" >"$OUT/probe.log" 2>&1 \
        || die "inside the image: $(last_line <"$OUT/probe.log")"
    set +e
    $E run --rm "${GPU_FLAGS[@]}" "${MOUNTS[@]}" "$TAG" "${SMOKE_ARGS[@]}" >"$SMOKE_LOG" 2>&1
    rc=$?
    set -e
    [ $rc = 0 ] || die "smoke run failed (exit $rc): $(job_error "$SMOKE_LOG") (log: $SMOKE_LOG)"
    HOW="with \`$E run${GPU_FLAGS[*]:+ ${GPU_FLAGS[*]}}\` and the results/outputs/data folders mounted"
else
    # The probe, then RUN in exec form with the image's own ENTRYPOINT: what `run IMAGE <args>` would execute,
    # as the image's user.
    json=${EP%]}
    for a in "${SMOKE_ARGS[@]}"; do json+=",\"$a\""; done
    probe_json=$(printf '%s' "$PROBE" | sed 's/\\/\\\\/g; s/"/\\"/g')
    printf 'FROM %s\nRUN ["sh", "-c", "%s"]\nRUN %s]\n' "$TAG" "$probe_json" "$json" >"$OUT/Containerfile.smoke"
    if ! build "$SMOKE_LOG" "${ISOLATION[@]}" --pull=never --no-cache "${MOUNTS[@]}" \
            -f "$OUT/Containerfile.smoke" -t "$TAG-smoke" "$OUT/ctx"; then
        probe=$(grep '^PROBE: ' "$SMOKE_LOG" | last_line || true)
        [ -n "$probe" ] && die "inside the image: ${probe#PROBE: }"
        die "smoke job failed: $(job_error "$SMOKE_LOG") (log: $SMOKE_LOG)"
    fi
    HOW="as a RUN step on top of the image (chroot isolation), the results/outputs/data folders mounted as \`run -v\` would"
fi
T_SMOKE=$(( $(now) - T0 ))
ok "inside the image: uid 1000, and no CA bundle left at /run/secrets/ca_bundle"
ok "smoke job ran in ${T_SMOKE} s $HOW"

# ------------------------------------------------------------------------------------------------ checks
shopt -s nullglob
rows=("$OUT"/results/runs/*.json)
[ ${#rows[@]} -ge 1 ] || die "no result row in $OUT/results/runs (smoke log: $SMOKE_LOG)"
row=${rows[0]}
if command -v python3 >/dev/null; then
    desc=$(python3 - "$row" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
bad = [f"{k}={r.get(k)!r}" for k, v in (("status", "done"), ("dataset", "digits"), ("sampler", "nws")) if r.get(k) != v]
if bad:
    print("BAD " + ", ".join(bad))
else:
    m = r.get("final_metric")
    print(f"status done, {r.get('steps')} steps, final {r.get('target_metric')} {f'{m:.3f}' if isinstance(m, float) else m}, "
          f"torch {r.get('torch_version')}, device {r.get('device')}")
EOF
    ) || die "cannot read the row $row as JSON"
    case "$desc" in BAD*) die "the row $row is not a finished digits/nws run: ${desc#BAD }" ;; esac
else
    grep -q '"status": *"done"' "$row" || die "the row $row does not say status done"
    desc="status done (python3 missing here: fields not checked)"
fi
ok "result row /results/runs/$(basename "$row") ($desc)"
if [ "$GPUS" = yes ]; then
    case "$desc" in *threads*) die "the GPU run's row names a CPU device: $desc" ;; esac
    ok "the GPU run trained on CUDA inside the container"
fi

owner=$(stat -c %u "$row")
ROOTFUL=0  # a rootful engine keeps uids: the container's 1000 is the host's 1000
if [ "$E" = docker ]; then docker info --format '{{json .SecurityOptions}}' 2>/dev/null | grep -q rootless || ROOTFUL=1
elif [ "$(podman info --format '{{.Host.Security.Rootless}}' 2>/dev/null)" = false ]; then ROOTFUL=1; fi
if [ "$ROOTFUL" = 1 ]; then
    [ "$owner" = 1000 ] || die "the row belongs to uid $owner, not 1000: the job did not run as nws"
    ok "the row was written by uid 1000 (nws)"
else
    miss "the row's owner (uid $owner on the host) not checked: rootless engine, uids are mapped"
fi

wandb_files=()
while IFS= read -r f; do wandb_files+=("$f"); done < <(find "$OUT/outputs" -path '*/wandb/offline-run-*' -name '*.wandb' -type f 2>/dev/null)
[ ${#wandb_files[@]} -ge 1 ] || die "no offline W&B run (outputs/.../wandb/offline-run-*/*.wandb) in $OUT/outputs (smoke log: $SMOKE_LOG)"
wb=${wandb_files[0]#"$OUT/outputs/"}
ok "offline W&B run /app/outputs/$(dirname "$wb") ($(basename "$wb"), $(stat -c %s "${wandb_files[0]}") bytes)"

# ------------------------------------------------------------------------------------------------ done
cleanup_images
trap - EXIT
FREE1=$(free_bytes "${STORE_DF:-/}")
if [ "$KEEP_IMAGE" = 1 ]; then
    say "kept the image $TAG ($(gib "$SIZE")); remove it with: $E rmi $TAG"
else
    say "removed the image $TAG"
fi
if [ "$BASE_KIND" = debian ]; then say "the Debian base $DEBIAN_BASE stays cached ($E rmi $DEBIAN_BASE drops it)"
else say "the base $BASE_REF stays ($E rmi $BASE_REF drops it)"; fi
if [ -n "$FREE0" ] && [ -n "$FREE1" ] && [ -n "$FREE_BUILT" ]; then
    say "disk in ${STORE_DF:-/}: $(gib $((FREE0 - FREE_BUILT))) used once built, $(gib $((FREE0 - FREE1))) still used now (vs. the start); smoke results and logs: $(du -sh "$OUT" | cut -f1) in $OUT"
fi
summary
say "OK in $(( $(now) - T_START )) s (build ${T_BUILD} s, smoke ${T_SMOKE} s)"
