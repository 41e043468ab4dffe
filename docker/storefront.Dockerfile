# syntax=docker/dockerfile:1
# The one `storefront` image: every service is a subcommand (`storefront
# gateway`, `storefront cart`, ...; the operator sets it per Deployment).
# Without arguments it runs `storefront all`, the whole shop in one process.
#
#   docker build -f docker/storefront.Dockerfile -t storefront:dev .
#
# Build stage: Debian bookworm, the same glibc as the distroless runtime.
# rdkafka builds librdkafka from source (cmake-build), which needs cmake and
# the libcurl headers; zlib is linked statically (LIBZ_SYS_STATIC) because
# the runtime image has no libz.

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
# The target dir is a cache mount, so the binary is copied out in the same
# step. The check after it refuses a binary that needs a shared library the
# distroless image lacks (it has glibc and libgcc only).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p storefront --bin storefront \
 && install -D -m 0755 target/release/storefront /out/storefront \
 && if ldd /out/storefront | grep -vE 'linux-vdso|ld-linux|lib(c|m|dl|rt|pthread|gcc_s)\.so'; then \
      echo "storefront links a library the runtime image lacks" >&2; exit 1; \
    fi

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="storefront" \
      org.opencontainers.image.description="Storefront: six gRPC services, a REST gateway and the web storefront in one binary" \
      org.opencontainers.image.source="https://github.com/storefront-dev/storefront" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/storefront /usr/local/bin/storefront
# SQLite catalog (the product default) in a writable place: /tmp is the
# only one (Kubernetes mounts an emptyDir there; the root is read-only).
ENV PRODUCT_DATABASE_URL="sqlite:///tmp/storefront-product.db?mode=rwc"
USER 65532:65532
# gateway, the six gRPC services, metrics
EXPOSE 8080 8081 50051 50052 50053 50054 50055 50056 9464
# Fits the default command (`all`): every gRPC server answers grpc.health.v1.
# A container running one service overrides it (deploy/compose.yaml does;
# Kubernetes ignores it and uses the operator's probes).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/storefront", "healthcheck", "http://127.0.0.1:50051", "http://127.0.0.1:50052", "http://127.0.0.1:50053", "http://127.0.0.1:50054", "http://127.0.0.1:50055", "http://127.0.0.1:50056"]
ENTRYPOINT ["/usr/local/bin/storefront"]
CMD ["all"]
