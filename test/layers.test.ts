import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The house plan's one-way flow: transports (HTTP routes, the socket gateway and delivery) call services and never
 * read the store themselves, so no transport can decide on its own what a caller may see.
 */
describe('layers', () => {
  it('no module of src/http or src/realtime imports a repository or the database (type-only imports aside)', () => {
    const offenders: string[] = [];
    for (const dir of ['src/http', 'src/realtime']) {
      for (const file of walk(dir)) {
        const text = fs.readFileSync(file, 'utf8');
        for (const m of text.matchAll(/^import\s+(type\s+)?[^;]*?from\s+'([^']+)'/gms)) {
          const [, typeOnly, spec] = m;
          if (!typeOnly && /\/store\//.test(spec!)) offenders.push(`${file}: ${spec}`);
        }
      }
    }
    expect(offenders).toEqual([]);
  });
});

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}
