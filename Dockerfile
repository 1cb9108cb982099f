# syntax=docker/dockerfile:1
# The consumer image: a static Go binary on distroless, non-root, no shell.
# Runs with a read-only root filesystem: the consumer writes nothing to disk.
#   docker build -t <registry>/aqs-consumer:<tag> .

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
COPY go.mod go.sum ./
COPY cmd/consumer/ ./cmd/consumer/
COPY internal/ ./internal/
# Only the modules the consumer imports are downloaded, not the whole graph.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/consumer ./cmd/consumer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/consumer /consumer
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/consumer"]
