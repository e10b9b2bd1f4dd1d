// Put install.json (how `jupyter labextension list` says the extension was installed: by pip, as
// nbserve-ml) beside the built extension in nbserve/labextension, which the wheel ships as
// share/jupyter/labextensions/nbserve. The builder does not copy it: every build, dev or prod, does it here.
import { copyFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = join(root, 'nbserve', 'labextension');
if (!existsSync(join(target, 'package.json'))) {
  throw new Error(`no built extension in ${target}: run the labextension build first`);
}
copyFileSync(join(root, 'install.json'), join(target, 'install.json'));
console.log(`copied install.json to ${target}`);
