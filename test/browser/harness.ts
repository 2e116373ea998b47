import { accessSync, constants, mkdirSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import express from 'express';
import { type Browser, type BrowserContext, type Page, chromium } from 'playwright-core';
import { type Backend, createBackend } from '../../backend/app';
import type { BackendOptions } from '../../backend/options';
import { errorHandler, notFound } from '../../middleware/errors';
import { developmentRoutes } from '../../routes/development';
import { type CreateRelayOptions, type Relay, createRelay } from '../../src/create-relay';
import { TEST_SECRET, authHeader } from '../support/relay-server';

/** The browser the tests drive: `CHROMIUM_BIN`, else Debian's. */
const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

/** Where the tests write their screenshots (git-ignored). */
const SCREENSHOTS = join(__dirname, '..', '..', 'test-results', 'browser');

/** Launches headless Chromium; throws (the test fails, never skips) when the binary is missing. */
export async function launchChromium(): Promise<Browser> {
  try {
    accessSync(CHROMIUM_BIN, constants.X_OK);
  } catch {
    throw new Error(`chromium not found at ${CHROMIUM_BIN}: install Debian's chromium (apt-get install -y chromium; .ci/run does) or set CHROMIUM_BIN`);
  }
  return chromium.launch({ executablePath: CHROMIUM_BIN, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** Timings that keep each flow to a second or two while every step still shows. */
const QUICK_BACKEND: Partial<BackendOptions> = { tickMs: 60, chunkMs: 15, tokenMs: 8, retryMs: 100, heartbeatMs: 60_000 };

/** The reference backend and the relay with its development routes and the demo, as `npm start` wires them. */
export class DemoStack {
  relay!: Relay;
  url = '';
  backendUrl = '';
  private relayServer: Server | undefined;
  private backendServer!: Server;
  private backend!: Backend;
  readonly backendErrors: unknown[] = [];
  /** Holds each topic change of a multiplexed stream (`POST /api/events/:id/topics`) this long before the relay sees it, as a slow network would. */
  topicChangeDelayMs = 0;
  /** The sockets of the streaming POSTs in flight by path (`/api/chat/stream`), for a test to cut as a dropped network would. */
  private readonly answerSockets = new Map<string, Set<Socket>>();

  constructor(
    private readonly relayOptions: Partial<CreateRelayOptions> = {},
    private readonly backendOptions: Partial<BackendOptions> = {},
  ) {}

  async start(): Promise<this> {
    this.backend = createBackend({ ...QUICK_BACKEND, onError: (err) => this.backendErrors.push(err), ...this.backendOptions });
    this.backendServer = createServer({ requestTimeout: 0 }, this.backend.app);
    this.backendUrl = await listen(this.backendServer, 0);
    this.url = await this.startRelay(0);
    return this;
  }

  /** Stops the relay (every connection cut, as a crashed process would) and starts a new one on the same port. */
  async restartRelay(downMs = 0): Promise<void> {
    const port = Number(new URL(this.url).port);
    await this.stopRelay();
    await new Promise((resolve) => setTimeout(resolve, downMs));
    await this.startRelay(port);
  }

  /** Starts `count` downloads on the reference backend as `user`; resolves to their topics (`download:CODE`). */
  async startDownloads(count: number, user = 'alice'): Promise<string[]> {
    return Promise.all(
      Array.from({ length: count }, async () => {
        const response = await fetch(`${this.url}/api/downloads`, { method: 'POST', headers: authHeader(user) });
        return `download:${((await response.json()) as { code: string }).code}`;
      }),
    );
  }

  /** Cuts the connection of every streaming POST to `path` in flight, as a phone changing networks would; returns how many. */
  cutAnswers(path: '/api/chat/stream' | '/api/documents/upload-sse'): number {
    const sockets = this.answerSockets.get(path) ?? new Set();
    const count = sockets.size;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    return count;
  }

  async close(): Promise<void> {
    await this.stopRelay();
    this.backendServer.closeAllConnections();
    this.backendServer.close();
    await this.backend.close();
  }

  private async startRelay(port: number): Promise<string> {
    this.relay = createRelay({
      backendUrl: this.backendUrl,
      jwt: { secret: TEST_SECRET },
      maxConnectionsPerUser: 100,
      maxConnectionsPerIp: 1000,
      rateLimitPerMinute: 0,
      ...this.relayOptions,
    });
    const app = express();
    app.use((req, res, next) => {
      if (req.method === 'POST' && (req.path === '/api/chat/stream' || req.path === '/api/documents/upload-sse')) {
        const sockets = this.answerSockets.get(req.path) ?? new Set();
        this.answerSockets.set(req.path, sockets);
        const socket = req.socket;
        sockets.add(socket);
        res.on('close', () => sockets.delete(socket));
      }
      if (this.topicChangeDelayMs > 0 && req.method === 'POST' && /^\/api\/events\/[^/]+\/topics$/.test(req.path)) setTimeout(next, this.topicChangeDelayMs);
      else next();
    });
    app.use(this.relay.router);
    app.use(developmentRoutes({ secret: TEST_SECRET }));
    app.use(notFound, errorHandler());
    this.relayServer = createServer({ requestTimeout: 0 }, app);
    return listen(this.relayServer, port);
  }

  private async stopRelay(): Promise<void> {
    const server = this.relayServer;
    if (!server) return;
    this.relayServer = undefined;
    server.close();
    server.closeAllConnections();
    await this.relay.close();
  }
}

async function listen(server: Server, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Client options the tests give the demo page (short backoff, fast polling). */
export const QUICK_CLIENT = { reconnect: { initialDelayMs: 200, factor: 1.5, maxDelayMs: 2000, jitter: 0.25, attempts: 3 }, pollIntervalMs: 300, readyTimeoutMs: 3000 };

/** Opens the demo in a fresh browser context and logs in as `user`. */
export async function openDemo(browser: Browser, url: string, user = 'alice', clientOptions: object = QUICK_CLIENT): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  await context.addInitScript((options) => {
    (globalThis as unknown as { demoClientOptions: object }).demoClientOptions = options;
  }, clientOptions);
  await page.goto(url);
  await page.fill('#user', user);
  await page.click('#login button');
  await page.locator('#whoami').filter({ hasText: user }).waitFor();
  if (problems.length > 0) throw new Error(`page errors: ${problems.join('; ')}`);
  return page;
}

/** Writes a screenshot of the page to test-results/browser/NAME.png. */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** What a bare client page saw (`window.seen`), each status with its `Date.now()`. */
export interface ClientSeen {
  statuses: { status: string; at: number; tab?: string; reason?: string; streamId?: string }[];
  events: Record<string, { status: string; progress?: number }[]>;
  ended: string[];
  errors: string[];
}

/** A fresh browser context (one profile: its tabs share cookies, locks and channels) logged in as `user`. */
export async function loggedInContext(browser: Browser, url: string, user = 'alice'): Promise<BrowserContext> {
  const context = await browser.newContext({ bypassCSP: true });
  const login = await context.request.post(`${url}/dev/login`, { data: { user } });
  if (!login.ok()) throw new Error(`dev login: HTTP ${login.status()}`);
  return context;
}

/**
 * A tab of the relay's origin that runs only the client, made with `options`: one subscription,
 * grown with `window.watch(topics)`, recording into `window.seen`.
 */
export async function openClientTab(context: BrowserContext, url: string, options: object): Promise<Page> {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(`${url}/healthz`);
  await page.evaluate(`(async (options) => {
    const { createClient } = await import('/client.js');
    const seen = { statuses: [], events: {}, ended: [], errors: [] };
    const client = createClient(options);
    const subscription = client.subscribe([], {
      onStatus(status, info) { seen.statuses.push({ status, at: Date.now(), ...info }); },
      onEvent({ topic, data }) { (seen.events[topic] ??= []).push(JSON.parse(data)); },
      onEnd(topic) { seen.ended.push(topic); },
      onError(error) { seen.errors.push(error.message); },
    });
    window.seen = seen;
    window.watch = (topics) => subscription.add(topics);
  })(${JSON.stringify(options)})`);
  if (problems.length > 0) throw new Error(`page errors: ${problems.join('; ')}`);
  return page;
}

/** What the tab saw so far. */
export function clientSeen(page: Page): Promise<ClientSeen> {
  return page.evaluate('window.seen') as Promise<ClientSeen>;
}
