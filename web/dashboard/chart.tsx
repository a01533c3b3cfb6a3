/** A line chart drawn as SVG by hand (no chart library, nothing loaded from elsewhere). */
export interface Series {
  name: string;
  color: string;
  points: Array<{ t: number; v: number }>;
}

export function LineChart(props: { series: Series[]; from: number; to: number; label: string }) {
  const W = 600;
  const H = 160;
  const P = { l: 36, r: 8, t: 10, b: 20 };
  const max = Math.max(1, ...props.series.flatMap((s) => s.points.map((p) => p.v)));
  const x = (t: number) => P.l + ((t - props.from) / Math.max(1, props.to - props.from)) * (W - P.l - P.r);
  const y = (v: number) => H - P.b - (v / max) * (H - P.t - P.b);
  const time = (t: number) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return (
    <figure class="card" style="margin:0 0 14px">
      <figcaption class="row">
        <b class="grow">{props.label}</b>
        <span class="legend">
          {props.series.map((s) => (
            <span key={s.name}>
              <i style={`background:${s.color}`} />
              {s.name}
            </span>
          ))}
        </span>
      </figcaption>
      <svg class="chart" viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={props.label}>
        <line class="axis" x1={P.l} y1={H - P.b} x2={W - P.r} y2={H - P.b} />
        <line class="axis" x1={P.l} y1={P.t} x2={P.l} y2={H - P.b} />
        <text x={2} y={P.t + 8}>{max}</text>
        <text x={2} y={H - P.b}>0</text>
        <text x={P.l} y={H - 4}>{time(props.from)}</text>
        <text x={W - P.r - 30} y={H - 4}>{time(props.to)}</text>
        {props.series.map((s) => (
          <g key={s.name}>
            <polyline class="line" stroke={s.color} points={s.points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ')} />
            {s.points.map((p) => (
              <circle key={p.t} cx={x(p.t)} cy={y(p.v)} r={2} fill={s.color}>
                <title>{`${time(p.t)}: ${p.v}`}</title>
              </circle>
            ))}
          </g>
        ))}
      </svg>
    </figure>
  );
}
