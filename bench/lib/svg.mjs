// A hand-written horizontal bar chart of ratios against the baselines (1.0 = as fast / as small as the baseline),
// with the targets of issue 6 listed underneath.
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * bars: [{label, ratio, target?, note?}]: green/red when the bar has a target (met/missed), blue otherwise.
 * lines: [{text, met?}]: rows of text under the chart (met true/false colours them).
 */
export function ratioChart(title, subtitle, bars, lines = []) {
  const rowH = 30;
  const left = 280;
  const width = 960;
  const plotW = 420;
  const top = 70;
  const chartH = bars.length * rowH;
  const height = top + chartH + 40 + lines.length * 20 + 10;
  const max = 1.5;
  const x = (v) => left + (Math.min(v, max) / max) * plotW;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`);
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="16" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="16" y="46" fill="#555">${esc(subtitle)}</text>`);
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const ok = Number.isFinite(b.ratio);
    const colour = b.target === undefined ? '#5b8cc4' : ok && b.ratio >= b.target ? '#4a8' : '#d75';
    out.push(`<text x="${left - 8}" y="${y + 17}" text-anchor="end">${esc(b.label)}</text>`);
    if (ok) {
      out.push(`<rect x="${left}" y="${y + 4}" width="${Math.max(1, x(b.ratio) - left).toFixed(1)}" height="18" fill="${colour}"/>`);
      const overflow = b.ratio > max ? ' (bar cut at 1.5)' : '';
      out.push(`<text x="${Math.min(x(b.ratio), left + plotW) + 6}" y="${y + 17}">${b.ratio.toFixed(3)}${b.note ? `  ${esc(b.note)}` : ''}${overflow}</text>`);
    } else {
      out.push(`<text x="${left + 6}" y="${y + 17}" fill="#888">${esc(b.note ?? 'not measured')}</text>`);
    }
    if (b.target !== undefined) out.push(`<line x1="${x(b.target)}" x2="${x(b.target)}" y1="${y + 1}" y2="${y + 25}" stroke="#000" stroke-width="2" stroke-dasharray="3,2"/>`);
  });
  const axisY = top + chartH + 4;
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${axisY}" stroke="#888"/>`);
  out.push(`<line x1="${x(1)}" x2="${x(1)}" y1="${top}" y2="${axisY}" stroke="#888"/>`);
  out.push(`<text x="${left}" y="${axisY + 16}" text-anchor="middle" fill="#555">0</text>`);
  out.push(`<text x="${x(1)}" y="${axisY + 16}" text-anchor="middle" fill="#555">1.0 = baseline</text>`);
  out.push(`<text x="${left + plotW}" y="${axisY + 16}" text-anchor="middle" fill="#555">dashed: target</text>`);
  lines.forEach((l, i) => {
    const fill = l.met === true ? '#286' : l.met === false ? '#b43' : '#333';
    out.push(`<text x="16" y="${axisY + 40 + i * 20}" fill="${fill}">${esc(l.text)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
