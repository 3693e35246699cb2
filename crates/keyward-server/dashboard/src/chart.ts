// Requests per day as an SVG bar chart (attributes only: no inline style).

import type { Schemas } from './api';
import { h, svg } from './dom';

/** The last `days` days (UTC, oldest first) with their counts; days without requests count 0. */
function series(usage: Schemas['UsageDayView'][], days: number): { day: string; count: number }[] {
  const counts = new Map(usage.map((u) => [u.day, u.count]));
  const out: { day: string; count: number }[] = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    const day = d.toISOString().slice(0, 10);
    out.push({ day, count: counts.get(day) ?? 0 });
  }
  return out;
}

export function usageChart(usage: Schemas['UsageDayView'][], days = 30): HTMLElement {
  const data = series(usage, days);
  const total = data.reduce((n, d) => n + d.count, 0);
  const max = Math.max(1, ...data.map((d) => d.count));
  const width = 300;
  const height = 80;
  const bar = width / days;
  const chart = svg(
    'svg',
    { viewBox: `0 0 ${width} ${height + 14}`, role: 'img', 'aria-label': `${total} requests in the last ${days} days`, class: 'chart' },
    svg('line', { x1: 0, y1: height, x2: width, y2: height, class: 'axis' }),
    data.map((d, i) => {
      const barHeight = d.count === 0 ? 0 : Math.max(2, (d.count / max) * (height - 4));
      return svg(
        'rect',
        { x: i * bar + 1, y: height - barHeight, width: bar - 2, height: barHeight, class: 'bar' },
        svg('title', {}, `${d.day}: ${d.count} requests`),
      );
    }),
    svg('text', { x: 0, y: height + 12, class: 'tick' }, data[0]?.day ?? ''),
    svg('text', { x: width, y: height + 12, class: 'tick end' }, data[data.length - 1]?.day ?? ''),
  );
  return h('figure', { class: 'usage' }, chart, h('figcaption', {}, `Requests per day (UTC): ${total} in the last ${days} days, peak ${max === 1 && total === 0 ? 0 : max}.`));
}
