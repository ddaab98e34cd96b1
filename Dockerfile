# syntax=docker/dockerfile:1
#
# Blueprint Runner: the Cloud Run Job image. Entrypoint `blueprint-runner job`,
# configured from the environment (see docs/DEPLOYMENT.md and README's *Environment*).
#
#   docker build -t blueprint-runner .          (BuildKit: the default builder since Docker 23)
#
# scripts/container-layout reproduces the runtime stage without Docker (same user, cache,
# WORK_DIR and entrypoint) so CI can check it.
#
# Expected image size: about 540-570 MB unpacked, about 200 MB compressed (what a pull
# downloads). How it was computed, on Debian 12 (bookworm) with its apt lists, ffmpeg
# 7:5.1.9-0+deb12u1:
#   - debian:bookworm-slim: ~75 MB (its published size).
#   - `apt-get install --no-install-recommends ffmpeg ca-certificates` on top of it: 202
#     packages (resolved with `apt-get -s` against a dpkg status holding only the slim
#     image's packages: Priority required + apt). Sum of their Installed-Size: 472,763 KiB
#     = 462 MiB; their files as installed (measured on a machine with the same packages):
#     454 MiB, 432 MiB without /usr/share/{doc,man,info,locale}, which the slim image's
#     dpkg config leaves out; gzip -6 of those files: 161 MiB. Most of it is not FFmpeg
#     itself but what Debian's libavdevice/libavfilter pull in: libllvm15 112 MiB (via
#     Mesa's libgl1-mesa-dri), libicu72 35, libmfx1 27, libflite1 26, libgl1-mesa-dri
#     25, libz3-4 22, libcodec2 16, libx265 16, libavcodec59 14, libavfilter8 12 MiB.
#     A static FFmpeg build would be ~80 MB instead, at the cost of a binary Debian does
#     not patch.
#   - /usr/local/bin/blueprint-runner: 36 MB (the release build measured: thin LTO,
#     symbols kept, profile.release strip = "debuginfo"; wasmtime with cranelift, the
#     GCS client and its TLS stack, tokio-postgres).
#   - /opt/blueprint-runner/cache: 1.0 MiB (one .cwasm, 1,049,304 bytes, measured).

# ---------------------------------------------------------------------------------------
# Build stage. rustc 1.95 is required (wasmtime 48.0.8, rust-version in Cargo.toml).
# Same Debian release as the runtime stage, so the binary's glibc symbols match.
FROM rust:1.95-slim-bookworm AS build

# host/build.rs builds the guest components for wasm32-wasip2 with a nested cargo and
# embeds the default guest in the binary.
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

# ffmpeg and ffprobe run as child processes. ca-certificates: the TLS roots for Google
# Cloud Storage and Google's auth endpoints, and for DB_SSLMODE=verify-full.
# No recommends: they would add X11/desktop packages a job never uses.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/*

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
