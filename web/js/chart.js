// Tree growth chart as inline SVG: tree size over time (line) and ingest
// rate between samples (bars), from the log's history and the page's own
// samples. Pure rendering from samples; no fetching.

const SVG_NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Entries per second between consecutive samples [{t (ms), size (Number)}]. */
export function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    out.push({ t: samples[i].t, rate: dt > 0 ? Math.max(0, samples[i].size - samples[i - 1].size) / dt : 0 });
  }
  return out;
}

/** A duration in words: "45 s", "12 min", "5.5 h", "3 days". */
export function span(ms) {
  const sec = ms / 1000;
  if (sec < 120) return `${Math.round(sec)} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  if (sec < 172800) return `${(sec / 3600).toFixed(1)} h`;
  return `${Math.round(sec / 86400)} days`;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 0 : 1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e4 ? 0 : 1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** Renders samples into an <svg> and returns it with a text summary. */
export function renderGrowthChart(samples, width = 640) {
  // Drawn at the container's pixel width so labels keep their real size.
  const W = Math.max(280, Math.round(width) || 640);
  const H = W < 500 ? 180 : 220;
  const pad = { l: 52, r: 52, t: 12, b: 28 };
  const r = rates(samples);
  const minSize = samples.length ? Math.min(...samples.map((x) => x.size)) : 0;
  const maxSize = samples.length ? Math.max(...samples.map((x) => x.size)) : 0;
  const maxRate = niceMax(r.length ? Math.max(...r.map((x) => x.rate)) : 0);
  const lo = Math.max(0, minSize);
  const hi = maxSize > lo ? maxSize : lo + 1;
  const t0 = samples.length ? samples[0].t : 0;
  const t1 = samples.length > 1 ? samples[samples.length - 1].t : t0 + 1;
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (W - pad.l - pad.r);
  const ySize = (v) => H - pad.b - ((v - lo) / (hi - lo)) * (H - pad.t - pad.b);
  const yRate = (v) => H - pad.b - (v / maxRate) * (H - pad.t - pad.b);

  const latestRate = r.length ? r[r.length - 1].rate : 0;
  const avgRate = samples.length > 1 ? (samples[samples.length - 1].size - samples[0].size) / ((t1 - t0) / 1000) : 0;
  const summary = samples.length < 2
    ? 'Collecting samples…'
    : `Tree size ${maxSize.toLocaleString('en-US')}; ${avgRate.toFixed(1)} entries/s on average over the last ${span(t1 - t0)}, ${latestRate.toFixed(1)} entries/s in the last interval.`;

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `Growth chart. ${summary}` });
  svg.append(s('line', { class: 'axis', x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b }));
  svg.append(s('line', { class: 'axis', x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b }));
  svg.append(s('line', { class: 'axis', x1: W - pad.r, y1: pad.t, x2: W - pad.r, y2: H - pad.b }));
  svg.append(s('text', { x: pad.l - 6, y: pad.t + 10, 'text-anchor': 'end' }, fmt(hi)));
  svg.append(s('text', { x: pad.l - 6, y: H - pad.b, 'text-anchor': 'end' }, fmt(lo)));
  svg.append(s('text', { x: W - pad.r + 6, y: pad.t + 10 }, `${fmt(maxRate)}/s`));
  svg.append(s('text', { x: W - pad.r + 6, y: H - pad.b }, '0/s'));
  if (samples.length > 1) {
    svg.append(s('text', { x: pad.l, y: H - 8 }, `${span(t1 - t0)} ago`));
    svg.append(s('text', { x: W - pad.r, y: H - 8, 'text-anchor': 'end' }, 'now'));
  }
  const bw = r.length ? Math.max(2, ((W - pad.l - pad.r) / Math.max(1, r.length)) * 0.6) : 0;
  for (const p of r) {
    const y = yRate(p.rate);
    svg.append(s('rect', { class: 'bar', x: x(p.t) - bw, y, width: bw, height: H - pad.b - y }));
  }
  if (samples.length) {
    const pts = samples.map((p) => `${x(p.t).toFixed(1)},${ySize(p.size).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { class: 'line', points: pts }));
  }
  return { svg, summary };
}
