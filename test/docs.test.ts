import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderApiDoc, renderConfigDoc, renderEnvExample } from '../src/cli/gen-docs.js';
import { routeTable } from '../src/http/routes/index.js';
import type { Services } from '../src/services.js';
import { SETTINGS } from '../src/config.js';

describe('generated docs are current', () => {
  it('docs/api.md lists every route of the route table with its auth (run npm run docs to refresh)', () => {
    const routes = routeTable({} as Services);
    expect(fs.readFileSync('docs/api.md', 'utf8')).toBe(renderApiDoc(routes));
    for (const r of routes) expect(r.example, `${r.method} ${r.url} needs a curl example`).toMatch(/^curl /);
  });

  it('docs/configuration.md lists every setting (run npm run docs to refresh)', () => {
    expect(fs.readFileSync('docs/configuration.md', 'utf8')).toBe(renderConfigDoc());
  });

  it('.env.example lists every setting at its default (run npm run docs to refresh)', () => {
    const text = fs.readFileSync('.env.example', 'utf8');
    expect(text).toBe(renderEnvExample());
    for (const s of SETTINGS) expect(text).toContain(`# ${s.env}=`);
  });
});
