# syntax=docker/dockerfile:1
#
# The storage backend alone, for platforms that build the last stage of a
# Dockerfile and cannot select a target (Render: see deploy/render.yaml).
# Everywhere else use the root Dockerfile:
#   docker build --target storage-backend -t authsidecar/storage-backend .
# Keep the two in step. Build from the repository root:
#   docker build -f deploy/storage-backend.Dockerfile -t authsidecar/storage-backend .

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/storage-backend ./storage-backend

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="authsidecar storage-backend" \
      org.opencontainers.image.description="The plain backend the authsidecar proxy protects: JSON records per device, trusting the proxy's X-Auth-* headers." \
      org.opencontainers.image.source="https://github.com/authsidecar/authsidecar" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/storage-backend /usr/local/bin/storage-backend
EXPOSE 9000
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/storage-backend"]
CMD ["serve"]
