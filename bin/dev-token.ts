import jwt from 'jsonwebtoken';
import { DEV_SECRET_FILE, developmentSecret } from '../config/dev-secret';

/**
 * `npm run token [user]`: prints a token the running development relay accepts, signed with
 * `JWT_SECRET` when it is set, else with the kept development secret.
 */
function main(): void {
  const user = process.argv[2] ?? 'dev-user';
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(user)) {
    console.error('usage: npm run token [user]   (user: 1-64 characters of A-Z, a-z, 0-9, ".", "_" or "-")');
    process.exit(2);
  }
  if (process.env.NODE_ENV === 'production') {
    console.error('npm run token is for development: in production, tokens come from your identity provider.');
    process.exit(1);
  }
  const secret = process.env.JWT_SECRET ?? developmentSecret();
  const token = jwt.sign({}, secret, { subject: user, expiresIn: '12h' });
  process.stdout.write(`${token}\n`);
  if (process.stderr.isTTY) {
    console.error(`(for "${user}", valid 12 h, signed with ${process.env.JWT_SECRET ? 'JWT_SECRET' : DEV_SECRET_FILE}; use: curl -H "Authorization: Bearer $(npm run -s token)" …)`);
  }
}

main();
