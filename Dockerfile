# syntax=docker/dockerfile:1
#
# Blueprint Runner: the Cloud Run Job image. Entrypoint `blueprint-runner job`,
# configured from the environment (see docs/DEPLOYMENT.md and docs/JOB.md's *Environment*).
#
#   docker build -t blueprint-runner .          (BuildKit: the default builder since Docker 23)
#
# scripts/container-layout reproduces the runtime stage without Docker (same user, cache,
# WORK_DIR and entrypoint) so CI can check it.
#
# FFmpeg is built here, small: scripts/build-ffmpeg configures FFmpeg 5.1.9 (Debian 12's,
# from the Debian archive, sha256-checked) with everything disabled except the containers,
# codecs, filters and bitstream filters the host accepts and its plan policy allows
# (crates/engine/src/formats.rs and crates/policy; a test keeps the script's lists equal to them).
# A hostile clip meets a few dozen demuxers and decoders instead of Debian's hundreds, and
# the runtime stage needs three small codec libraries instead of Debian's FFmpeg with its
# 200 packages (LLVM, Mesa, ICU...).

# ---------------------------------------------------------------------------------------
# FFmpeg stage: ffmpeg and ffprobe into /opt/ffmpeg/bin (the script installs its own
# build dependencies with apt).
FROM debian:bookworm-slim AS ffmpeg
COPY scripts/build-ffmpeg /usr/local/bin/build-ffmpeg
RUN build-ffmpeg /opt/ffmpeg

# ---------------------------------------------------------------------------------------
# Build stage. rustc 1.95 is required (wasmtime 48.0.8, rust-version in Cargo.toml).
# Same Debian release as the runtime stage, so the binary's glibc symbols match.
FROM rust:1.95-slim-bookworm AS build

# host/build.rs builds the default guest component for wasm32-wasip2 with a nested cargo
# and embeds it in the binary (the guests only the tests load are built by
# tests/programs, a dev-dependency, which this build never compiles).
RUN rustup target add wasm32-wasip2

# Nothing else to install: the slim image has gcc and libc6-dev, which is all the C code
# needs (ring, wasmtime's small C/asm parts, aws-lc-sys: on x86_64/aarch64 Linux gnu
# aws-lc-sys uses its cc builder with pregenerated bindings, so neither cmake, clang
# nor bindgen is needed).

WORKDIR /src
# One COPY of the whole workspace (.dockerignore drops target/, .git, outputs): the
# workspace's build.rs and path dependencies make a manifests-only layer more fragile
# than useful; the cache mounts below keep the crates and compiled dependencies across
# builds instead.
COPY . .

# target/ is a cache mount, so it is not in the layer: the binary is copied out in the
# same step. --locked: build exactly Cargo.lock (the nested guest build shares it).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p blueprint-runner --locked \
 && install -D -m 0755 target/release/blueprint-runner /out/blueprint-runner

# ---------------------------------------------------------------------------------------
# Runtime stage.
FROM debian:bookworm-slim

# The encoders' and the AV1 decoder's shared libraries (Debian's, patched by Debian) for
# the minimal ffmpeg and ffprobe; ca-certificates: the TLS roots for Google Cloud Storage
# and Google's auth endpoints, and for DB_SSLMODE=verify-full.
# apt-get clean and the .bin caches: the official image's docker-clean hook removes them
# by itself, a base made otherwise does not (60 MB of package caches otherwise).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libx264-164 libx265-199 libdav1d6 ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

COPY --from=ffmpeg /opt/ffmpeg/bin/ffmpeg /opt/ffmpeg/bin/ffprobe /usr/local/bin/
# Fails the build if a shared library the two need is missing.
RUN ffmpeg -hide_banner -version | head -1 && ffprobe -hide_banner -version | head -1

# A system user with a fixed uid (stable file ownership across image versions), no
# home and no login shell. /opt/blueprint-runner belongs to it so that the binary itself
# creates the cache folder, private (0700), as the cache demands: a compiled guest is
# trusted native code, and a cache others can write is refused.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin runner \
 && install -d -o runner -g runner -m 0755 /opt/blueprint-runner

COPY --from=build /out/blueprint-runner /usr/local/bin/blueprint-runner

USER runner

# Compile the guest now, as runner, so each execution loads it in about a millisecond
# instead of compiling it (about a second) at start. The file name carries wasmtime's
# engine hash, which includes the CPU features cranelift detected on the build machine:
# on a Cloud Run host whose CPU differs, the job compiles the guest once more at start
# and works the same (see docs/DEPLOYMENT.md). The test fails the build if the cache
# folder did not come out private to runner.
RUN blueprint-runner precompile --cache-dir /opt/blueprint-runner/cache \
 && test "$(stat -c '%a %U' /opt/blueprint-runner/cache)" = "700 runner"

# WORK_DIR: the per-job work folder (mode 0700) is made in /tmp. On Cloud Run the
# container's writable filesystem is in memory: what the job stages there counts
# against the memory limit.
ENV BLUEPRINT_RUNNER_CACHE_DIR=/opt/blueprint-runner/cache \
    WORK_DIR=/tmp

# The binary is PID 1: it handles SIGTERM itself (kills and reaps the running FFmpeg,
# records the status as cancelled), and its only children are the ffmpeg/ffprobe it
# starts and waits for, so no init process is needed.
ENTRYPOINT ["blueprint-runner", "job"]
