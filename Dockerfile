# Multi-stage build: compile in the Rust image, run in a slim Debian as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin zadig-server

FROM debian:bookworm-slim
# Jobs run as local processes in the job sandbox (user/mount/PID namespaces: run the container
# with the security options of docker-compose.yml): bash for scripts, git for repositories. The data directory
# exists in the image so that a named volume mounted there is owned by the zadig user.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git bash \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/zadig zadig \
    && install -d -o zadig -g zadig /var/lib/zadig/data
COPY --from=build /src/target/release/zadig-server /usr/local/bin/zadig-server
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/zadig
ENV ZADIG_LISTEN=0.0.0.0:8080 \
    ZADIG_DATA_DIR=/var/lib/zadig/data \
    ZADIG_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["zadig-server"]
CMD ["serve"]
