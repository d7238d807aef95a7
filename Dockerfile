# Gantry: one binary, the role is chosen by flags (see README "Roles").
#
#   docker build -t gantry:local .
#   docker run --rm -p 8000:8000 gantry:local                   # embedded mode: SQLite + dev auth
#   docker run --rm gantry:local --server                       # production: set DATABASE_URL, REDIS_URL,
#                                                               # KEYCLOAK_ISSUER, GANTRY_ENV=production
#
# Nothing secret is baked in: configuration comes from the environment at run time, and the
# build context is a whitelist (.dockerignore), so a local .env or gantry.db never reaches it.

ARG RUST_VERSION=1

# ---------------------------------------------------------------------------------------------
# builder: the release binary. Dependencies are compiled in their own layer (against a dummy
# main) so that editing src/ does not rebuild the ~400 crates behind it.
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

COPY Cargo.toml Cargo.lock ./
COPY migration/Cargo.toml migration/Cargo.toml
RUN mkdir -p src migration/src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && : > migration/src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src migration/src

COPY src src
COPY migration/src migration/src
# COPY keeps the files' old mtimes, which can be older than the dummy build's outputs: touch the
# crate roots so cargo rebuilds gantry and migration instead of shipping the dummy.
RUN touch src/main.rs src/lib.rs migration/src/lib.rs \
 && cargo build --release --locked \
 && ./target/release/gantry --version

# ---------------------------------------------------------------------------------------------
# runtime: glibc from the same Debian release as the builder; CA certificates for Keycloak over
# HTTPS, webhooks and Git remotes; git (and openssh-client, which git only recommends) for the
# codegen runner's delivery to Git repositories; curl only for container health checks
# (docker-compose.yml).
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git openssh-client \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 gantry \
 && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /var/lib/gantry --shell /usr/sbin/nologin gantry \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/gantry

COPY --from=builder /src/target/release/gantry /usr/local/bin/gantry

USER 10001:10001
WORKDIR /var/lib/gantry
ENV ROCKET_ADDRESS=0.0.0.0 \
    ROCKET_PORT=8000 \
    GANTRY_DATA_DIR=/var/lib/gantry
EXPOSE 8000

ENTRYPOINT ["/usr/local/bin/gantry"]
# The dev default (README "Roles"); docker-compose.yml runs --server and --all-workers apart.
CMD ["--server", "--all-workers"]
