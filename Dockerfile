# Builds the `subsidy-ingester` binary and the dev tools' `subsidy-dev` (sample feeds, for
# the compose file's `demo` service) and ships both in a small Debian image.
# Used by docker-compose.yml (services `migrate`, `ingester`, `demo`); plain
# `docker build .` works too.
# Only classic Dockerfile features are used, so it also builds without BuildKit.

# --- build stage -------------------------------------------------------------
FROM rust:1.89-bookworm AS builder

# rdkafka builds its bundled librdkafka from source: a C toolchain, make,
# pkg-config, zlib and OpenSSL headers (SSL/SASL_SSL to Kafka; HTTPS to ClickHouse uses the
# same libssl); cmake only for the optional cmake-build feature.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin subsidy-ingester --bin subsidy-dev \
    && cp target/release/subsidy-ingester target/release/subsidy-dev /usr/local/bin/

# --- runtime stage -----------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin ingester \
    && install -d -o ingester -g ingester /var/lib/subsidy-ingester

COPY --from=builder /usr/local/bin/subsidy-ingester /usr/local/bin/subsidy-dev /usr/local/bin/

USER ingester
# The ledger's local state (`state`, SUBSIDY_STATE_DIR's default, is relative): a folder
# the ingester user owns, so a volume mounted here starts owned by it too.
WORKDIR /var/lib/subsidy-ingester
CMD ["subsidy-ingester", "run"]
