# imkit-server container image (docs/deploy.md).
#
#   docker build -t imkit-server .
#   docker run -p 3000:3000 -v imkit-data:/data imkit-server
#
# Two stages on the same Debian base: the first installs every dependency, compiles the TypeScript and bundles the
# dashboard (npm run build), then drops the development packages; the second holds only the production
# node_modules, dist/ and package.json. The native modules (better-sqlite3, sharp, @node-rs/argon2) are installed
# in the first stage for the same platform and C library as the second, so they load there unchanged.
# NODE_VERSION may be 22 or 24 (package.json "engines").
ARG NODE_VERSION=22

FROM node:${NODE_VERSION}-bookworm-slim AS build
# better-sqlite3 downloads a prebuilt binary when one exists for this Node and CPU, and otherwise compiles itself
# with node-gyp, which needs these.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY web ./web
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && chmod 755 dist/main.js

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production \
    IMKIT_DATA_DIR=/data
WORKDIR /app
# Owned by root and read-only to the server's user: the process can write only to /data (and /tmp). /data/files
# exists in the image, owned by that user, so a new volume mounted there (compose.yaml) takes its owner from it.
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN ln -s /app/dist/main.js /usr/local/bin/imkit-server \
 && mkdir -p /data/files \
 && chown -R node:node /data
VOLUME ["/data"]
USER node
EXPOSE 3000
# Node's own fetch: the slim image has no curl or wget. /healthz answers 503 from the start of a graceful shutdown.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/main.js"]
CMD ["start"]
