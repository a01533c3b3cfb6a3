// Builds the dashboard and the web chat (web/) into dist/web: one ES module each, minified, with preact, uPlot and
// the socket.io client bundled in (the pages load nothing from elsewhere: they work offline). Run by `npm run build`.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/web');
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });
const result = await build({
  entryPoints: { dashboard: path.join(root, 'web/dashboard/main.tsx'), chat: path.join(root, 'web/chat/main.tsx') },
  outdir: out,
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});
// uPlot's stylesheet (the charts of the dashboard), then the pages' own: one file, served from this server.
const uplotCss = fs.readFileSync(path.join(root, 'node_modules/uplot/dist/uPlot.min.css'), 'utf8');
fs.writeFileSync(path.join(out, 'app.css'), `${uplotCss}\n${fs.readFileSync(path.join(root, 'web/app.css'), 'utf8')}`);
if (process.argv.includes('--sizes')) {
  for (const [file, info] of Object.entries(result.metafile.outputs)) console.log(`${path.relative(root, file)}  ${info.bytes} bytes`);
}
