# One build for both binaries; pick the image with --target indexer|webhook.
# Pure Go (CGO_ENABLED=0): the zTOC builder needs no zlib.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/indexer ./cmd/indexer \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/webhook ./cmd/webhook \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS webhook
COPY --from=build /out/webhook /usr/local/bin/webhook
EXPOSE 8085
ENTRYPOINT ["/usr/local/bin/webhook"]

# Last, so that a plain `docker build .` gives the indexer.
FROM gcr.io/distroless/static-debian12:nonroot AS indexer
COPY --from=build /out/indexer /usr/local/bin/indexer
# All-in-one data (NATS, SQLite, registry) when run without NATS/database URLs.
COPY --from=build --chown=65532:65532 /out/data /var/lib/soci-indexer
ENV INDEXER_DATA_DIR=/var/lib/soci-indexer
EXPOSE 8080 5000
ENTRYPOINT ["/usr/local/bin/indexer"]
CMD ["serve"]
