# The orchestrator's own image: `aegis serve` with the docker backend, driving the Docker
# Engine whose socket is mounted at /var/run/docker.sock. Each sample runs in a container of
# its own (no network), never in this one.
#
# With registry access (the documented way):
#   docker build -t aegisai/sandbox-orchestrator:latest .
#   docker run -d -p 8002:8002 -v /var/run/docker.sock:/var/run/docker.sock \
#       aegisai/sandbox-orchestrator:latest
#
# Without registry access (this project's CI): a Debian base imported from mmdebstrap and a
# binary built on the host; scripts/docker-image.sh does both. See docs/backends.md.

# The runtime base: any Debian 12 (the binary links glibc 2.36).
ARG BASE_IMAGE=debian:bookworm-slim
# Where the binary is built: a Rust toolchain image, or the runtime base when PREBUILT names
# a binary in the build context.
ARG BUILD_IMAGE=rust:1-bookworm

FROM ${BUILD_IMAGE} AS build
# A binary from the build context (e.g. `aegis`, built on a Debian 12 host); empty: build here.
ARG PREBUILT=
WORKDIR /src
COPY . .
RUN if [ -n "$PREBUILT" ]; then \
        install -m 0755 "$PREBUILT" /aegis; \
    else \
        cargo build --release --locked && install -m 0755 target/release/aegis /aegis; \
    fi

FROM ${BASE_IMAGE}
COPY --from=build /aegis /usr/local/bin/aegis
COPY docker/config.json /etc/aegis/config.json
COPY docker/entrypoint.sh /usr/local/bin/aegis-entrypoint
# An optional guest image (docker/guest/linux.tar, from scripts/docker-image.sh); without
# one, mount a data directory that has it (see docs/backends.md).
COPY docker/guest/ /opt/aegis-guest/
LABEL io.aegisai.orchestrator="1"
EXPOSE 8002
VOLUME /var/lib/aegis
ENTRYPOINT ["/usr/local/bin/aegis-entrypoint"]
CMD ["serve"]
