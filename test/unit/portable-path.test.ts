import { portable, portableArg, portableArgs } from '../../bench/portable-path';

const ROOT = '/home/someone/src/sse-relay';

test('a bench report records paths inside the repository relative to it, and others by file name only', () => {
  expect(portable(`${ROOT}/bench/results/full.md`, ROOT)).toBe('bench/results/full.md');
  expect(portable('/tmp/nginx-build/usr/sbin/nginx', ROOT)).toBe('nginx');
  expect(portable('bench/results/x.md', ROOT)).toBe('bench/results/x.md');
});

test("a bench report's command line shows no absolute path, whether given as its own argument or after =", () => {
  const argv = ['--nginx', '/opt/nginx/sbin/nginx', `--out=${ROOT}/bench/results/a.md`, '--subscribers', '1000'];
  expect(argv.map((arg) => portableArg(arg, ROOT))).toEqual(['--nginx', 'nginx', '--out=bench/results/a.md', '--subscribers', '1000']);
});

test("a bench report's command line shows the --before checkout as what it holds, never its path", () => {
  const shownAs = { '--before': '<a build of abc1234>' };
  expect(portableArgs(['--before', '/tmp/old-checkout', '--runs', '3'], ROOT, shownAs)).toEqual(['--before', '<a build of abc1234>', '--runs', '3']);
  expect(portableArgs(['--before=../old', `--out=${ROOT}/x.md`], ROOT, shownAs)).toEqual(['--before=<a build of abc1234>', '--out=x.md']);
});
