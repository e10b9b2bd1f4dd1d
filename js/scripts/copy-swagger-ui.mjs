// Copy the Swagger UI assets that a served model's /docs page loads (nbserve/server/app.py) into
// nbserve/server/static/vendor/swagger-ui, so the wheel and the Docker images serve them locally:
// no CDN, which a model behind a firewall could not reach. The directory is gitignored: it is built.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const source = dirname(require.resolve('swagger-ui-dist/package.json'));
const target = join(here, '..', '..', 'nbserve', 'server', 'static', 'vendor', 'swagger-ui');

mkdirSync(target, { recursive: true });
for (const name of ['swagger-ui-bundle.js', 'swagger-ui.css', 'LICENSE', 'NOTICE']) {
  const from = join(source, name);
  if (existsSync(from)) {
    copyFileSync(from, join(target, name));
  } else if (name.endsWith('.js') || name.endsWith('.css')) {
    throw new Error(`swagger-ui-dist has no ${name} at ${from}; run jlpm install in js/`);
  }
}
console.log(`copied Swagger UI assets to ${target}`);
