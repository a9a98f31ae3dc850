# syntax=docker/dockerfile:1
# One image for every pd-router component: `docker run <image> epp|sidecar|sim|gateway|dev ...`.

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

# Runtime: distroless Node.js (no shell, no package manager), non-root.
FROM gcr.io/distroless/nodejs20-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/proto ./proto
COPY --from=build /src/dist/src ./dist/src
USER 65532:65532
EXPOSE 8000 8200 9002 9003 9090
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]
CMD ["--help"]
