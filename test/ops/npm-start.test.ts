import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { FixtureBackend } from '../support/fixture-backend';
import { freePort } from '../support/free-port';
import { TEST_SECRET, authHeader } from '../support/relay-server';
import { until } from '../support/until';

const ROOT = join(__dirname, '../..');
const PATH = '/downloads/npm-start/events';

let backend: FixtureBackend;
/** Relay pids seen, to kill if a test leaves one running (what the bug did). */
const relayPids: number[] = [];

beforeAll(async () => {
  backend = await new FixtureBackend().start();
});

afterAll(async () => {
  for (const pid of relayPids) {
    if (isRunning(pid)) process.kill(pid, 'SIGKILL');
  }
  await backend.close();
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** Whether something accepts connections on the port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

test("SIGTERM to npm start's own pid drains the relay, which exits: no process left, the port free, npm's exit code 0", async () => {
  const port = await freePort();
  // As a process manager runs it: `npm start`, whose pid is the one it signals. The build
  // (prestart) is pretest's job here; the start script itself is what hands on the signal.
  const npm = spawn('npm', ['start', '--ignore-scripts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      JWT_SECRET: TEST_SECRET,
      BACKEND_URL: backend.url,
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: '5000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: { msg?: string; pid?: number; [field: string]: unknown }[] = [];
  let output = '';
  let partial = '';
  npm.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.startsWith('{')) log.push(JSON.parse(line) as (typeof log)[number]);
  });
  npm.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
  const exited = once(npm, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    await until(() => log.some((line) => line.msg === 'relay listening'), 15_000, `the relay to listen; output: ${output}`);
    const relayPid = log.find((line) => line.msg === 'relay listening')?.pid as number;
    relayPids.push(relayPid);
    expect(relayPid).not.toBe(npm.pid);

    const stream = await fetch(`http://127.0.0.1:${port}/api${PATH}`, { headers: { ...authHeader('alice'), accept: 'text/event-stream' } });
    expect(stream.status).toBe(200);
    await until(() => backend.listeners(PATH) === 1, 5000, 'the upstream');
    backend.emit(PATH, 'data: before\n');
    // The SIGTERM goes once the client has the event: on a loaded machine it could overtake it.
    const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
    let received = '';
    while (!received.includes('data: before')) {
      const { value, done } = await reader.read();
      if (done) break;
      received += value;
    }
    const body = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return received;
        received += value;
      }
    })();
    // Read only once the process is known gone; until then a failure must not go unhandled.
    body.catch(() => undefined);

    npm.kill('SIGTERM');
    const [code, signal] = await exited;
    expect(isRunning(relayPid)).toBe(false);
    expect(await listening(port)).toBe(false);
    expect([code, signal]).toEqual([0, null]);
    // It stopped as a SIGTERM stops it: the stream drained, ending with the relay's come-back
    // hint after the event it already had. (npm's exit may come before the last lines are read.)
    expect(await body).toMatch(/data: before\nid: 1\n\n[\s\S]*retry: \d+\n\n$/);
    await until(() => log.some((line) => line.msg === 'stopped'), 2000, 'the stopped line');
    expect(log.find((line) => line.msg === 'stopping')).toMatchObject({ signal: 'SIGTERM', streams: 1 });
  } finally {
    if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
  }
}, 30_000);
