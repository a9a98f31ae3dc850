# syntax=docker/dockerfile:1
# pd-router images. Per component, as llm-d ships them, so a manifest written for an llm-d image runs with only the
# image swapped (its args are flags; the entrypoint is the component):
#   docker build --target epp     -t ghcr.io/pd-router/pd-router-epp .       # for llm-d's EPP image
#   docker build --target sidecar -t ghcr.io/pd-router/pd-router-sidecar .   # for llm-d's pd-sidecar image
#   docker build --target sim     -t ghcr.io/pd-router/pd-router-sim .       # for llm-d-inference-sim's image
# And the all-in-one image (the default target): `docker run <image> epp|sidecar|sim|gateway|dev|tune|loadgen ...`.

# Build: compile TypeScript, then keep only the runtime dependencies.
FROM docker.io/library/node:20.19-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY proto ./proto
COPY src ./src
COPY bench ./bench
RUN npm run build && npm prune --omit=dev --ignore-scripts

# Runtime: distroless Node.js (no shell, no package manager), non-root. Every image below is this one with another
# entrypoint.
FROM gcr.io/distroless/nodejs20-debian12:nonroot AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/proto ./proto
COPY --from=build /src/dist/src ./dist/src
USER 65532:65532

# Endpoint Picker: ext_proc 9002, gRPC health 9003, metrics 9090. Args are the EPP's flags.
FROM runtime AS epp
EXPOSE 9002 9003 9090
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/bin/pd-router-epp.js"]

# Routing sidecar: 8000 in front of the decode vLLM on 8200. Args are the sidecar's flags.
FROM runtime AS sidecar
EXPOSE 8000
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/bin/pd-router-sidecar.js"]

# vLLM simulator on 8000. Args are the simulator's flags.
FROM runtime AS sim
EXPOSE 8000
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/bin/pd-router-sim.js"]

# All-in-one (the default target): the first argument is the command.
FROM runtime AS pd-router
EXPOSE 8000 8200 9002 9003 9090
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]
CMD ["--help"]
