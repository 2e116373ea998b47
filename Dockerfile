# Build stage: compile TypeScript with the dev dependencies. Scripts are skipped at install
# (`prepare` would build before the sources are copied); the build runs once below.
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
# The reference backend (BACKEND_URL=bundled) is a demo: it is compiled (server.ts is typed
# against it) but left out of the image unless built with --build-arg BUNDLED_BACKEND=true.
ARG BUNDLED_BACKEND=false
RUN npm run build && find dist -name '*.map' -delete && rm dist/*.tsbuildinfo \
  && if [ "$BUNDLED_BACKEND" != true ]; then rm -r dist/backend; fi

# Runtime stage: production dependencies and the compiled output only, as a non-root user.
# In production the relay needs BACKEND_URL (BACKEND_URL=bundled runs the demo backend inside,
# in an image built with BUNDLED_BACKEND=true) and JWT_SECRET or JWT_PUBLIC_KEY at run time;
# without them it exits with one line saying which.
FROM node:20.20.2-bookworm-slim
ENV NODE_ENV=production PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/server.js"]
