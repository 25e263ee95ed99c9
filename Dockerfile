# syntax=docker/dockerfile:1
# genlbridge's image: a static binary on distroless, nothing else.
#
#   docker build -t REGISTRY/genlbridge:TAG --build-arg VERSION=$(git describe --always --dirty) .
#
# The image runs as the unprivileged user 65532 (distroless "nonroot"), which
# is all that `tail`, `families` and `replay` need. The DaemonSet in
# deploy/base runs the daemon as uid 0 with one capability, NET_ADMIN
# (runAsUser: 0), because Kubernetes cannot give a non-root process a
# capability: see deploy/README.md. No file capabilities are set here: they
# would not apply under no_new_privs (allowPrivilegeEscalation: false).

# The Go version of go.mod (deploy/docker_test.go checks they agree).
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
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

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="genlbridge" \
      org.opencontainers.image.description="Kernel generic netlink multicast events to NATS and JetStream, on every node of a fleet" \
      org.opencontainers.image.source="https://github.com/genlbridge/genlbridge" \
      org.opencontainers.image.url="https://github.com/genlbridge/genlbridge" \
      org.opencontainers.image.documentation="https://github.com/genlbridge/genlbridge/tree/main/deploy" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/genlbridge /genlbridge
USER 65532:65532
# /metrics, /healthz, /readyz (GENLBRIDGE_HTTP_ADDR, default :9477).
EXPOSE 9477
ENTRYPOINT ["/genlbridge"]
CMD ["run"]
