# syntax=docker/dockerfile:1
# The Storefront operator (`storefront-operator run`), as
# charts/storefront-operator runs it.
#
#   docker build -f docker/operator.Dockerfile -t storefront-operator:dev .
#
# Same build as docker/storefront.Dockerfile: bookworm to match the
# runtime's glibc, cmake and libcurl headers for the vendored librdkafka
# (the operator manages topics through the Kafka admin API), static zlib.

ARG RUST_VERSION=1.94

FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_INCREMENTAL=0 \
    CARGO_TERM_COLOR=never \
    LIBZ_SYS_STATIC=1
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p storefront-operator --bin storefront-operator \
 && install -D -m 0755 target/release/storefront-operator /out/storefront-operator \
 && if ldd /out/storefront-operator | grep -vE 'linux-vdso|ld-linux|lib(c|m|dl|rt|pthread|gcc_s)\.so'; then \
      echo "storefront-operator links a library the runtime image lacks" >&2; exit 1; \
    fi

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="storefront-operator" \
      org.opencontainers.image.description="Reconciles Storefront resources into a running shop" \
      org.opencontainers.image.source="https://github.com/storefront-dev/storefront" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/storefront-operator /usr/local/bin/storefront-operator
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/storefront-operator"]
CMD ["run"]
