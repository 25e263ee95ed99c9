# genlbridge's image: a static binary on an empty base, nothing else.
#
#   buildah build --platform linux/amd64,linux/arm64 --manifest REGISTRY/genlbridge:TAG \
#     --build-arg VERSION=$(git describe --always --dirty) .
#   docker build -t REGISTRY/genlbridge:TAG --build-arg VERSION=$(git describe --always --dirty) .
#
# `make image` builds it with no registry at all (buildah, --pull-never):
# the builder is then a local image made from this machine's Go
# (GO_IMAGE), and the final stage needs none (scratch). See deploy/README.md.
# There is no `# syntax=` line (BuildKit would pull that frontend): the
# cache mounts below are in the frontend built into docker and buildah.
#
# The image runs as the unprivileged user 65532 ("nonroot"), which is all
# that `tail`, `families` and `replay` need. The DaemonSet in deploy/base
# runs the daemon as uid 0 with one capability, NET_ADMIN (runAsUser: 0),
# because Kubernetes cannot give a non-root process a capability: see
# deploy/README.md. No file capabilities are set here: they would not apply
# under no_new_privs (allowPrivilegeEscalation: false).

# The Go version of go.mod (deploy/docker_test.go checks they agree).
ARG GO_VERSION=1.26.8
# Any image with that Go, a shell and a CA bundle; make image passes its own.
ARG GO_IMAGE=golang:${GO_VERSION}-bookworm

# The builder runs on the build machine's platform and cross-compiles for
# the target's (TARGETARCH): no emulation, one builder image for every
# platform of the manifest list.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/genlbridge ./cmd/genlbridge
# What the final stage holds besides the binary: the CA bundle (TLS to the
# NATS servers without GENLBRIDGE_NATS_TLS_CA), the users root and nonroot
# (65532), and a /tmp.
RUN mkdir -p /out/root/etc/ssl/certs /out/root/tmp /out/root/home/nonroot \
    && cp /etc/ssl/certs/ca-certificates.crt /out/root/etc/ssl/certs/ \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/root/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' >/out/root/etc/group \
    && chmod 1777 /out/root/tmp && chown 65532:65532 /out/root/home/nonroot

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="genlbridge" \
      org.opencontainers.image.description="Kernel generic netlink multicast events to NATS and JetStream, on every node of a fleet" \
      org.opencontainers.image.source="https://github.com/genlbridge/genlbridge" \
      org.opencontainers.image.url="https://github.com/genlbridge/genlbridge" \
      org.opencontainers.image.documentation="https://github.com/genlbridge/genlbridge/tree/main/deploy" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/root/ /
COPY --from=build /out/genlbridge /genlbridge
USER 65532:65532
# /metrics, /healthz, /readyz (GENLBRIDGE_HTTP_ADDR, default :9477).
EXPOSE 9477
ENTRYPOINT ["/genlbridge"]
CMD ["run"]
