# One build for every image; pick it with --target indexer|worker|webhook.
# Pure Go (CGO_ENABLED=0): the zTOC builder needs no zlib.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/indexer ./cmd/indexer \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -tags noregistry -o /out/worker/indexer ./cmd/indexer \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/webhook ./cmd/webhook \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS webhook
COPY --from=build /out/webhook /usr/local/bin/webhook
EXPOSE 8085
ENTRYPOINT ["/usr/local/bin/webhook"]

# The indexer without the embedded registry (-tags noregistry): workers,
# backfill and the CLI against an external registry, NATS and database.
FROM gcr.io/distroless/static-debian12:nonroot AS worker
COPY --from=build /out/worker/indexer /usr/local/bin/indexer
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/indexer"]
CMD ["serve"]

# Last, so that a plain `docker build .` gives the indexer (all-in-one too).
FROM gcr.io/distroless/static-debian12:nonroot AS indexer
COPY --from=build /out/indexer /usr/local/bin/indexer
# All-in-one data (NATS, SQLite, registry) when run without NATS/database URLs.
COPY --from=build --chown=65532:65532 /out/data /var/lib/soci-indexer
ENV INDEXER_DATA_DIR=/var/lib/soci-indexer
EXPOSE 8080 5000
ENTRYPOINT ["/usr/local/bin/indexer"]
CMD ["serve"]
