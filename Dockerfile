# syntax=docker/dockerfile:1
#
# One Dockerfile, two images:
#
#   docker build -t authsidecar/proxy .                                   # the proxy (last stage)
#   docker build --target storage-backend -t authsidecar/storage-backend .
#   docker build --build-arg VERSION=1.2.3 -t authsidecar/proxy:1.2.3 .
#
# The proxy is the last stage so that a plain `docker build`, and platforms that
# cannot pick a target (Render), get the proxy.

# The builder runs on the build machine's own architecture and cross-compiles
# (CGO_ENABLED=0 makes that trivial): a multi-arch build with
# `--platform linux/amd64,linux/arm64` does not emulate the Go toolchain.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS deps
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first, in their own layer: editing code does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

# One build stage per program, so that `--target storage-backend` compiles only
# the storage backend.
FROM deps AS build-proxy
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/proxy ./proxy

FROM deps AS build-storage-backend
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/storage-backend ./storage-backend

# Runtime: distroless static, nonroot. No shell, no package manager: only the
# static binary, CA certificates (for a TLS connection to PostgreSQL), tzdata
# and /etc/passwd. The binaries are on PATH, so `kubectl exec … -- proxy
# migrate status` works. USER is the nonroot user by number (65532), so that
# Kubernetes can verify runAsNonRoot without being told the uid.
FROM gcr.io/distroless/static-debian12:nonroot AS storage-backend
ARG VERSION=dev
LABEL org.opencontainers.image.title="authsidecar storage-backend" \
      org.opencontainers.image.description="The plain backend the authsidecar proxy protects: JSON records per device, trusting the proxy's X-Auth-* headers." \
      org.opencontainers.image.source="https://github.com/authsidecar/authsidecar" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-storage-backend /out/storage-backend /usr/local/bin/storage-backend
# The program's default LISTEN_ADDR is 127.0.0.1:9000 on purpose: it trusts the
# identity headers, so it must only be reachable through the proxy. Bind it
# wider only inside a private network (see deploy/compose.yaml).
EXPOSE 9000
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/storage-backend"]
CMD ["serve"]

FROM gcr.io/distroless/static-debian12:nonroot AS proxy
ARG VERSION=dev
LABEL org.opencontainers.image.title="authsidecar proxy" \
      org.opencontainers.image.description="Auth reverse proxy: login, signed tokens, sessions in PostgreSQL, forwarding with the caller's identity." \
      org.opencontainers.image.source="https://github.com/authsidecar/authsidecar" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-proxy /out/proxy /usr/local/bin/proxy
# 8080: headsets and clients (LISTEN_ADDR). 9464: Prometheus /metrics
# (METRICS_ADDR), never to be published where headsets reach it.
EXPOSE 8080 9464
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/proxy"]
CMD ["serve"]
