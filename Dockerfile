# syntax=docker/dockerfile:1
# kvstream image: the gRPC server, the `kvstream` CLI and the bundled model.
#
#   docker build -t kvstream:cuda .                          CUDA 13.0 (GPU; CPU fallback)
#   docker build --build-arg VARIANT=cpu -t kvstream:cpu .   CPU only (Debian 12, like CI)
#
# Stages: build (the project's own scripts/setup.sh and scripts/build.sh, the
# very commands CI runs through .ci/run -> scripts/test.sh), bundle
# (deploy/bundle.sh gathers binaries, their shared libraries and the model),
# runtime (a slim base with only that bundle). deploy/docker-compose.yml
# runs it; tests/deploy/deploy_test.py checks this file against a checklist.
#
# Configuration is by environment: every server flag --x-y can be set as
# FLAGS_x_y (absl's --tryfromenv, see the ENTRYPOINT); arguments after the
# image name are extra server flags.

# The CUDA version here is pinned by CUDA_IMAGE_VERSION in scripts/versions.env.
ARG CUDA_VERSION=13.0.2
ARG VARIANT=cuda

# ---- base images of each variant -------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS build-base-cuda
# ON: also link libtorch's CUDA build (the venv's torch wheel is cu130).
ENV KVSTREAM_CUDA=ON

FROM debian:12 AS build-base-cpu
ENV KVSTREAM_CUDA=OFF

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04 AS runtime-base-cuda
FROM debian:12-slim AS runtime-base-cpu

# ---- build: exactly what CI runs on a fresh machine --------------------------
FROM build-base-${VARIANT} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    KVSTREAM_CACHE=/var/cache/kvstream
WORKDIR /src
COPY . .
RUN bash scripts/setup.sh
RUN bash scripts/build.sh

# ---- bundle: server, CLI, their shared libraries, the model ------------------
FROM build AS bundle
RUN bash deploy/bundle.sh build /opt/kvstream

# ---- runtime ------------------------------------------------------------------
FROM runtime-base-${VARIANT} AS runtime
COPY --from=bundle /opt/kvstream /opt/kvstream
# A fixed uid, so mounted certificates and token files can be owned by it.
RUN groupadd --system --gid 10001 kvstream \
 && useradd --system --uid 10001 --gid kvstream --home-dir /opt/kvstream --no-create-home \
      --shell /usr/sbin/nologin kvstream
ENV PATH=/opt/kvstream/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/kvstream/lib \
    FLAGS_model=/opt/kvstream/models/SmolLM2-135M-Instruct.Q4_1.gguf \
    FLAGS_host=0.0.0.0 \
    FLAGS_port=50051 \
    FLAGS_metrics_port=9090 \
    FLAGS_device=auto \
    KVSTREAM_HEALTH_ARGS=""
USER kvstream
WORKDIR /opt/kvstream
EXPOSE 50051 9090
# The server drains on SIGTERM: running requests finish, new ones get
# UNAVAILABLE (give it a stop grace period longer than your longest request).
STOPSIGNAL SIGTERM
# grpc.health.v1 through the CLI: SERVING once the model is loaded. Health
# needs no token; with TLS set KVSTREAM_HEALTH_ARGS=--tls-ca=<ca.pem>.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD kvstream health --target="127.0.0.1:${FLAGS_port}" --timeout=4 ${KVSTREAM_HEALTH_ARGS}
# Exec form: the server is PID 1 and gets SIGTERM itself.
ENTRYPOINT ["kvstream-server", "--tryfromenv=model,host,port,device,kv_budget_bytes,host_kv_budget_bytes,max_batch,max_queue,prefill_chunk,metrics_port,allow_entmax_attention,tls_cert,tls_key,auth_token_file,max_message_bytes,max_prompt_tokens,synthetic,threads,tensor_parallel"]
