// A small live chart of delivery latency: the last LIMIT samples as an SVG polyline.

const LIMIT = 60;
const SVG = "http://www.w3.org/2000/svg";

export class LatencyChart {
  constructor(svg, summary) {
    this.svg = svg;
    this.summary = summary;
    this.samples = [];
    this.line = document.createElementNS(SVG, "polyline");
    svg.append(this.line);
  }

  add(ms) {
    this.samples.push(Math.max(0, ms));
    if (this.samples.length > LIMIT) this.samples.shift();
    this.draw();
  }

  draw() {
    const top = Math.max(10, ...this.samples);
    const step = 300 / Math.max(1, LIMIT - 1);
    const points = this.samples.map((ms, i) => `${(i * step).toFixed(1)},${(78 - (ms / top) * 74).toFixed(1)}`);
    this.line.setAttribute("points", points.join(" "));
    const sorted = [...this.samples].sort((a, b) => a - b);
    const p50 = sorted[Math.floor((sorted.length - 1) / 2)];
    this.summary.textContent =
      `${sorted.length} deliveries; median ${p50} ms; max ${sorted[sorted.length - 1]} ms`;
  }
}
