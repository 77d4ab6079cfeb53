# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# timetzdata: agents' time zones resolve even on an image without a zoneinfo database.
RUN CGO_ENABLED=0 go build -trimpath -tags timetzdata -ldflags='-s -w' -o /out/brain ./cmd/brain \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/mockllm ./cmd/mockllm \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/callsim ./cmd/callsim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The default agent; mount your own prompts directory over it (edits are picked up live).
COPY --chown=nonroot:nonroot prompts/*.md /etc/callbrain/prompts/
COPY --chown=nonroot:nonroot prompts/examples/ /etc/callbrain/examples/
ENV BRAIN_ADDR=:8080 \
    PROMPTS_DIR=/etc/callbrain/prompts
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/brain"]
