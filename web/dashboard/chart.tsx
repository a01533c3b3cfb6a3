import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

/**
 * A line chart of per-minute figures, drawn by uPlot (bundled: nothing is loaded from elsewhere; its stylesheet is
 * joined to app.css at build). Under the canvas, the same figures as a table for screen readers and tests.
 */
export interface Series {
  name: string;
  color: string;
  points: Array<{ t: number; v: number }>;
}

export function LineChart(props: { series: Series[]; from: number; to: number; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const key = JSON.stringify([props.series, props.from, props.to]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    // One x axis (seconds) for every series: the minutes any of them has, each series null where it has none.
    const xs = [...new Set(props.series.flatMap((s) => s.points.map((p) => Math.floor(p.t / 1000))))].sort((a, b) => a - b);
    const data: uPlot.AlignedData = [xs, ...props.series.map((s) => {
      const byT = new Map(s.points.map((p) => [Math.floor(p.t / 1000), p.v]));
      return xs.map((x) => byT.get(x) ?? null);
    })];
    const plot = new uPlot(
      {
        width: Math.max(300, el.clientWidth || 600),
        height: 170,
        legend: { show: true },
        scales: { x: { time: true, range: [Math.floor(props.from / 1000), Math.ceil(props.to / 1000)] }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        series: [{}, ...props.series.map((s) => ({ label: s.name, stroke: s.color, width: 2, spanGaps: true, points: { show: true, size: 5 } }))],
        axes: [{}, { size: 40 }],
      },
      data,
      el,
    );
    const resize = () => plot.setSize({ width: Math.max(300, el.clientWidth || 600), height: 170 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [key]);
  const time = (t: number) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return (
    <figure class="card chart-card">
      <figcaption>
        <b>{props.label}</b>
      </figcaption>
      <div ref={box} class="chart" role="img" aria-label={props.label} data-testid="chart" />
      <table class="visually-hidden">
        <caption>{props.label}</caption>
        <tbody>
          {props.series.flatMap((s) =>
            s.points.map((p) => (
              <tr key={`${s.name}-${p.t}`}>
                <th>{s.name}</th>
                <td>{time(p.t)}</td>
                <td>{p.v}</td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    </figure>
  );
}
