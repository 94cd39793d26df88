# kfp-mesh: one static binary (`kfp-mesh webhook`, `kfp-mesh check`, ...) in a distroless image.
#
#   docker build -t ghcr.io/kfp-mesh/kfp-mesh:0.1.0 .
#
# Builds for the architecture of the build machine (x86_64 or aarch64), statically linked
# against musl; TLS is rustls with ring, so no OpenSSL or libc is needed at run time. The
# binary is built by scripts/build-dist (cargo profile `dist`), the same script the release
# workflow and scripts/test run. Building and pushing your own image: docs/webhook.md.

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
RUN scripts/build-dist "$(uname -m)-unknown-linux-musl" /out

# distroless "static" = CA certificates, tzdata, /etc/passwd with user nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kfp-mesh /kfp-mesh
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/kfp-mesh"]
CMD ["webhook", "--help"]
