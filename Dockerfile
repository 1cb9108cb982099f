# The consumer image: a static Go binary on distroless, non-root, no shell.
# Runs with a read-only root filesystem: the consumer writes nothing to disk.
#
# Classic-builder compatible on purpose: the stack builds this file with an ACR task run (a quick
# build), and ACR quick builds run the classic Docker builder, not BuildKit (docs/cloud-notes.md).
# So: no `# syntax` line, no `RUN --mount`, no heredocs, no `COPY --link/--chmod`, and no
# BuildKit-only automatic platform arguments ($BUILDPLATFORM, $TARGETARCH...). dockerfile_test.go
# parses this file with BuildKit's own parser and fails on any of them.
#   docker build -t <registry>/aqs-consumer:<tag> .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY cmd/consumer/ ./cmd/consumer/
COPY app/ ./app/
COPY internal/ ./internal/
# Only the modules the consumer imports are downloaded, not the whole graph. Static (no cgo),
# for linux/amd64 (the NAP node pool's architecture).
ENV CGO_ENABLED=0 GOOS=linux GOARCH=amd64
RUN go build -trimpath -ldflags "-s -w" -o /out/consumer ./cmd/consumer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/consumer /consumer
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/consumer"]
