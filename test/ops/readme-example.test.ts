import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { freePort } from '../support/free-port';
import { until } from '../support/until';

const ROOT = join(__dirname, '../..');

/** The library example of `page` (its TypeScript block that listens on 8080), where it mounts the router, and the CommonJS a user's build would make of it, listening on `port`. */
function libraryExample(page: string, port: number): { mount: string; code: string } {
  const text = readFileSync(join(ROOT, page), 'utf8');
  const source = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]).find((block) => block?.includes('app.listen(8080)'));
  if (source === undefined) throw new Error(`${page}: no library example listening on 8080`);
  const mount = /app\.use\('([^']*)', relay\.router\)/.exec(source)?.[1] ?? '';
  const adapted = source.replace("from 'sse-relay'", `from ${JSON.stringify(join(ROOT, 'dist/index.js'))}`).replace('app.listen(8080)', `app.listen(${port}, '127.0.0.1')`);
  const code = ts.transpileModule(adapted, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
  return { mount, code };
}

test.each(['README.md', 'docs/library.md'])("the library example of %s listens, and on SIGTERM drains, stops and exits 0", async (page) => {
  const port = await freePort();
  const { mount, code } = libraryExample(page, port);
  const dir = mkdtempSync(join(tmpdir(), 'readme-example-'));
  writeFileSync(join(dir, 'example.js'), code);
  const child = spawn(process.execPath, [join(dir, 'example.js')], {
    env: { ...process.env, NODE_PATH: join(ROOT, 'node_modules'), JWT_SECRET: 'a-secret-for-the-readme-example-0123456789' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = once(child, 'exit');
  try {
    const health = `http://127.0.0.1:${port}${mount}/healthz`;
    await until(async () => (await fetch(health).catch(() => undefined))?.ok === true, 10_000, 'the example to listen');
    child.kill('SIGTERM');
    const stillRunning = setTimeout(() => child.kill('SIGKILL'), 5000);
    expect(await exited).toEqual([0, null]);
    clearTimeout(stillRunning);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
