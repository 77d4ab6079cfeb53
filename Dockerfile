# syntax=docker/dockerfile:1
# Builds with Docker (BuildKit) and Podman/Buildah alike: every base image is fully qualified,
# so no search registry is needed. Build: docker build --build-arg VERSION=$(git describe
# --always) --build-arg COMMIT=$(git rev-parse HEAD) -t callbrain .
FROM docker.io/library/golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: a source edit does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# Static (CGO off); timetzdata: agents' time zones resolve without a zoneinfo database.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags timetzdata \
      -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/brain ./cmd/brain \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/mockllm ./cmd/mockllm \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/callsim ./cmd/callsim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The default agent; mount your own prompts directory over it (edits are picked up live).
COPY --chown=nonroot:nonroot prompts/*.md /etc/callbrain/prompts/
COPY --chown=nonroot:nonroot prompts/examples/ /etc/callbrain/examples/
ENV BRAIN_ADDR=:8080 \
    BRAIN_METRICS_ADDR=:9090 \
    PROMPTS_DIR=/etc/callbrain/prompts
EXPOSE 8080 9090
USER nonroot:nonroot
# distroless has no shell or curl: the brain probes itself.
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/brain", "health"]
ENTRYPOINT ["/usr/local/bin/brain"]
