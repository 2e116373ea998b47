import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { freePort } from '../support/free-port';
import { until } from '../support/until';

const ROOT = join(__dirname, '../..');

/** The README's library example, as the CommonJS a user's build would make of it, listening on `port`. */
function libraryExample(port: number): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const library = readme.slice(readme.indexOf('\n## Library\n'));
  const source = /```ts\n([\s\S]*?)```/.exec(library)?.[1];
  if (source === undefined || !source.includes('app.listen(8080)')) throw new Error('README: no library example listening on 8080');
  const adapted = source.replace("from 'sse-relay'", `from ${JSON.stringify(join(ROOT, 'dist/index.js'))}`).replace('app.listen(8080)', `app.listen(${port}, '127.0.0.1')`);
  return ts.transpileModule(adapted, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
}

test("the README's library example listens, and on SIGTERM drains, stops and exits 0", async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'readme-example-'));
  writeFileSync(join(dir, 'example.js'), libraryExample(port));
  const child = spawn(process.execPath, [join(dir, 'example.js')], {
    env: { ...process.env, NODE_PATH: join(ROOT, 'node_modules'), JWT_SECRET: 'a-secret-for-the-readme-example-0123456789' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = once(child, 'exit');
  try {
    await until(async () => (await fetch(`http://127.0.0.1:${port}/me`).catch(() => undefined))?.ok === true, 10_000, 'the example to listen');
    expect((await fetch(`http://127.0.0.1:${port}/relay/healthz`)).status).toBe(200);
    child.kill('SIGTERM');
    const stillRunning = setTimeout(() => child.kill('SIGKILL'), 5000);
    expect(await exited).toEqual([0, null]);
    clearTimeout(stillRunning);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
